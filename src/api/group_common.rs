//! What the group API handlers share.

use crate::io::rand::HashMap;

use crate::metadata::ClusterMeta;
use crate::protocol::error::{self as ec, ErrorCode};

/// The topics and partitions of a request about partitions (OffsetCommit,
/// OffsetDelete), in request order, with whether each partition exists.
/// Only the existing ones go to the coordinator; the answer lists every
/// requested partition, the others UNKNOWN_TOPIC_OR_PARTITION (as Kafka
/// does).
#[derive(Default)]
pub struct PartitionLayout(Vec<(String, Vec<(i32, bool)>)>);

impl PartitionLayout {
    /// Record a requested topic and its partitions (`index` gives a
    /// partition's index); returns the partitions that exist, in order.
    pub fn add<P>(&mut self, meta: &ClusterMeta, topic: &str, partitions: Vec<P>, index: impl Fn(&P) -> i32) -> Vec<P> {
        let count = meta.topic(topic).map_or(0, |m| m.partitions.len());
        let mut layout = Vec::with_capacity(partitions.len());
        let mut known = Vec::new();
        for p in partitions {
            let i = index(&p);
            let exists = usize::try_from(i).is_ok_and(|i| i < count);
            layout.push((i, exists));
            if exists {
                known.push(p);
            }
        }
        self.0.push((topic.to_string(), layout));
        known
    }

    /// The answer in request order, built with `partition(index, code)` and
    /// `topic(name, partitions)`: an existing partition has its code from
    /// the coordinator's `results` (topic, [(partition, code)]), or
    /// UNKNOWN_SERVER_ERROR when they miss it.
    pub fn answer<T, P>(
        self,
        results: impl IntoIterator<Item = (String, Vec<(i32, ErrorCode)>)>,
        partition: impl Fn(i32, ErrorCode) -> P,
        topic: impl Fn(&str, Vec<P>) -> T,
    ) -> Vec<T> {
        let mut codes: HashMap<String, HashMap<i32, ErrorCode>> = HashMap::default();
        for (name, parts) in results {
            codes.entry(name).or_default().extend(parts);
        }
        self.0
            .into_iter()
            .map(|(name, parts)| {
                let known = codes.get(&name);
                let partitions = parts
                    .into_iter()
                    .map(|(index, exists)| {
                        let code = if exists {
                            known
                                .and_then(|k| k.get(&index))
                                .copied()
                                .unwrap_or(ec::UNKNOWN_SERVER_ERROR)
                        } else {
                            ec::UNKNOWN_TOPIC_OR_PARTITION
                        };
                        partition(index, code)
                    })
                    .collect();
                topic(&name, partitions)
            })
            .collect()
    }
}
