use std::time::Duration;

use ringlog::io::sim::{SimConfig, World};
use ringlog::sim::broker::{broker_addr, BrokerSettings, SimBroker};
use ringlog::sim::client::Client;

#[test]
fn smoke() {
    let w = World::new(1, SimConfig::default());
    let r = w.run(0, async {
        let b = SimBroker::new(BrokerSettings::default());
        b.start();
        let ok = b.wait_ready(Duration::from_secs(60)).await;
        eprintln!("ready: {ok:?} at {:?}", ringlog::io::sim::world().elapsed());
        let mut c = ringlog::io::sim::world()
            .spawn_on(2, async { Client::connect(broker_addr()).await })
            .await
            .unwrap();
        let v = c.api_versions().await.unwrap();
        eprintln!("apis: {}", v.api_keys.len());
        let ct = c.create_topic("t", 3, &[]).await.unwrap();
        eprintln!("create: {:?}", ct.topics[0].error_code);
        let e = b.stop(Duration::from_secs(30)).await;
        eprintln!("stop: {e:?} at {:?}", ringlog::io::sim::world().elapsed());
    });
    eprintln!("{r:?}");
    w.shutdown();
}
