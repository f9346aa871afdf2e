//! The leader's view of the ISR while it changes it (KIP-497, design §7.4).

/// The ISR as the leader knows it: committed (in the metadata log), or a
/// change it proposed with AlterPartition and awaits the answer of. At
/// most one change is in flight.
///
/// While a change is in flight the leader counts the **maximal ISR** for
/// the high watermark: the committed ISR plus a replica being added, and
/// still including replicas being removed (Kafka's rule: whichever way the
/// controller decides, the HW never counts fewer replicas than the ISR it
/// ends up with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrState {
    Committed {
        isr: Vec<i32>,
        partition_epoch: i32,
    },
    /// AlterPartition proposing `isr + [adding]` is in flight.
    PendingExpand {
        isr: Vec<i32>,
        adding: i32,
        partition_epoch: i32,
    },
    /// AlterPartition proposing `isr − removing` is in flight.
    PendingShrink {
        isr: Vec<i32>,
        removing: Vec<i32>,
        partition_epoch: i32,
    },
}

impl IsrState {
    /// The committed ISR.
    pub fn committed(&self) -> &[i32] {
        match self {
            IsrState::Committed { isr, .. }
            | IsrState::PendingExpand { isr, .. }
            | IsrState::PendingShrink { isr, .. } => isr,
        }
    }

    /// The partition epoch of the committed ISR.
    pub fn partition_epoch(&self) -> i32 {
        match self {
            IsrState::Committed { partition_epoch, .. }
            | IsrState::PendingExpand { partition_epoch, .. }
            | IsrState::PendingShrink { partition_epoch, .. } => *partition_epoch,
        }
    }

    /// The maximal ISR: committed, plus a replica being added (a replica
    /// being removed still counts).
    pub fn maximal(&self) -> Vec<i32> {
        let mut out = self.committed().to_vec();
        if let IsrState::PendingExpand { adding, .. } = self {
            if !out.contains(adding) {
                out.push(*adding);
            }
        }
        out
    }

    /// The ISR proposed by the change in flight, if any.
    pub fn proposed(&self) -> Option<Vec<i32>> {
        match self {
            IsrState::Committed { .. } => None,
            IsrState::PendingExpand { .. } => Some(self.maximal()),
            IsrState::PendingShrink { isr, removing, .. } => {
                Some(isr.iter().copied().filter(|r| !removing.contains(r)).collect())
            }
        }
    }

    pub fn in_flight(&self) -> bool {
        !matches!(self, IsrState::Committed { .. })
    }

    /// Back to the committed state (the change was not attempted).
    pub fn revert(&mut self) {
        *self = IsrState::Committed {
            isr: self.committed().to_vec(),
            partition_epoch: self.partition_epoch(),
        };
    }
}
