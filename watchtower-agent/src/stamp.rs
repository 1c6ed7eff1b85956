//! Stamping: gives each event its identity `(host_id, boot_id, seq)` and its
//! wall-clock time. Used by the reconciler stage, the one place events are
//! stamped, in the order they are output.

use crate::clock;
use crate::event::{Event, EventBody};
use crate::seq::SeqAllocator;

/// Gives each event its identity and wall-clock time.
pub struct Stamper {
    pub host_id: String,
    pub boot_id: String,
    pub seq: SeqAllocator,
}

impl Stamper {
    pub fn stamp(&mut self, ktime_ns: u64, body: EventBody) -> std::io::Result<Event> {
        let unix_ns = clock::boot_to_unix_ns(ktime_ns);
        Ok(Event {
            host_id: self.host_id.clone(),
            boot_id: self.boot_id.clone(),
            seq: self.seq.next()?,
            time: clock::rfc3339(unix_ns),
            time_unix_ns: unix_ns,
            body,
        })
    }
}
