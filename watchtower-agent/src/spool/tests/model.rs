//! The spool against a model: any sequence of appends, acks, reads and reopens.

use proptest::prelude::*;

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<usize>),
    /// Ack a fraction (of 65,535) of the way from `acked` to the last index.
    Ack(u16),
    AckBeyond,
    Reopen,
    /// Kill -9 or power loss mid-write: cut part of the last frame (a fraction, of
    /// 65,535, of its length), then reopen.
    Tear(u16),
    Read {
        from: u16,
        max_records: usize,
        max_bytes: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => prop::collection::vec(0usize..120, 0..6).prop_map(Op::Append),
        3 => any::<u16>().prop_map(Op::Ack),
        1 => Just(Op::AckBeyond),
        2 => Just(Op::Reopen),
        1 => any::<u16>().prop_map(Op::Tear),
        2 => (any::<u16>(), 0usize..5, 0usize..300)
            .prop_map(|(from, max_records, max_bytes)| Op::Read { from, max_records, max_bytes }),
    ]
}

/// What the spool should hold: every record written (by index), the ack, the next index.
struct Model {
    records: BTreeMap<u64, Vec<u8>>,
    acked: u64,
    next: u64,
    full: u64,
    tag: u64,
}

impl Model {
    fn pending(&self) -> Vec<(u64, Vec<u8>)> {
        self.records
            .range(self.acked + 1..)
            .map(|(&i, p)| (i, p.clone()))
            .collect()
    }
}

fn is_subsequence(written: &[(u64, Vec<u8>)], offered: &[Vec<u8>]) -> bool {
    let mut offered = offered.iter();
    written.iter().all(|(_, p)| offered.any(|o| o == p))
}

fn check(spool: &Spool, model: &Model, dir: &Path) -> Result<(), TestCaseError> {
    prop_assert_eq!(spool.acked(), model.acked);
    prop_assert_eq!(spool.next_index(), model.next);
    let pending = model.pending();
    prop_assert_eq!(spool.pending(), pending.len() as u64);
    prop_assert_eq!(spool.bytes(), disk_bytes(dir));
    prop_assert!(spool.bytes() <= spool.max_bytes());
    prop_assert_eq!(all_from(spool, model.acked + 1), pending);
    let mut previous = 0;
    for (index, payload) in all_from(spool, 1) {
        prop_assert!(index > previous);
        prop_assert_eq!(model.records.get(&index), Some(&payload));
        previous = index;
    }
    prop_assert_eq!(spool.dropped()["spool_full"], model.full);
    Ok(())
}

fn apply(spool: &mut Spool, model: &mut Model, op: &Op, config: &SpoolConfig) -> Result<(), TestCaseError> {
    match op {
        Op::Append(lens) => {
            let records: Vec<Vec<u8>> = lens
                .iter()
                .map(|&len| {
                    model.tag += 1;
                    payload(model.tag, len)
                })
                .collect();
            let appended = spool.append(&records).unwrap();
            prop_assert_eq!(appended.written + appended.dropped_full, records.len() as u64);
            model.full += appended.dropped_full;
            if appended.written == 0 {
                prop_assert_eq!(appended.first_index, 0);
                return Ok(());
            }
            prop_assert_eq!(appended.first_index, model.next);
            let written = all_from(spool, appended.first_index);
            let expected: Vec<u64> = (model.next..model.next + appended.written).collect();
            prop_assert_eq!(indexes(&written), expected);
            prop_assert!(is_subsequence(&written, &records));
            model.records.extend(written);
            model.next += appended.written;
        }
        Op::Ack(fraction) => {
            let last = model.next - 1;
            let through = model.acked + (last - model.acked) * u64::from(*fraction) / u64::from(u16::MAX);
            spool.ack(through).unwrap();
            model.acked = model.acked.max(through);
        }
        Op::AckBeyond => {
            let through = model.next;
            let beyond = matches!(spool.ack(through), Err(SpoolError::AckBeyondEnd { .. }));
            prop_assert!(beyond, "ack through {} was not refused", through);
        }
        Op::Reopen => {
            // A clean close makes the last ack durable (a crash only resends, see
            // an_ack_that_deletes_nothing_waits_in_memory_and_a_crash_only_resends).
            spool.sync_acked().unwrap();
            let (reopened, report) = Spool::open(config.clone()).unwrap();
            let expected = OpenReport {
                corrupt_records: 0,
                truncated_bytes: 0,
                pending: model.pending().len() as u64,
            };
            prop_assert_eq!(report, expected);
            // Counters live in memory only.
            model.full = 0;
            *spool = reopened;
        }
        Op::Tear(fraction) => {
            let Some(last_file) = segment_files(&config.dir).pop() else {
                return Ok(());
            };
            // The last segment ends with the last record written, which is unacknowledged
            // (a segment goes only when all of its records are acknowledged).
            let last = model.next - 1;
            let frame = frame_len(model.records[&last].len());
            let cut = 1 + (frame - 1) * u64::from(*fraction) / u64::from(u16::MAX);
            let cut = cut.min(frame - 1);
            let file = OpenOptions::new().write(true).open(&last_file).unwrap();
            file.set_len(file.metadata().unwrap().len() - cut).unwrap();
            drop(file);
            // A clean close before the damage (as in Reopen).
            spool.sync_acked().unwrap();
            let (reopened, report) = Spool::open(config.clone()).unwrap();
            model.records.remove(&last);
            model.next = last;
            let expected = OpenReport {
                corrupt_records: 1,
                truncated_bytes: frame - cut,
                pending: model.pending().len() as u64,
            };
            prop_assert_eq!(report, expected);
            model.full = 0;
            *spool = reopened;
        }
        Op::Read {
            from,
            max_records,
            max_bytes,
        } => check_read(spool, model, u64::from(*from), *max_records, *max_bytes)?,
    }
    Ok(())
}

fn check_read(
    spool: &Spool,
    model: &Model,
    from: u64,
    max_records: usize,
    max_bytes: usize,
) -> Result<(), TestCaseError> {
    let from = from % (model.next + 1);
    let got = spool.read_from(from, max_records, max_bytes).unwrap();
    let mut previous = 0;
    for (index, payload) in &got {
        prop_assert!(*index >= from && *index > previous);
        prop_assert_eq!(model.records.get(index), Some(payload));
        previous = *index;
    }
    prop_assert!(got.len() <= max_records.max(1));
    let total: usize = got.iter().map(|(_, p)| p.len()).sum();
    prop_assert!(got.len() <= 1 || total <= max_bytes);
    // Unacknowledged records are never skipped, and reading stops only at a limit.
    let wanted: Vec<(u64, Vec<u8>)> = model
        .records
        .range(from.max(model.acked + 1)..)
        .map(|(&i, p)| (i, p.clone()))
        .collect();
    let unacked: Vec<&(u64, Vec<u8>)> = got.iter().filter(|(i, _)| *i > model.acked).collect();
    prop_assert!(unacked.len() <= wanted.len());
    for (got, wanted) in unacked.iter().zip(&wanted) {
        prop_assert_eq!(*got, wanted);
    }
    if wanted.len() > unacked.len() {
        // Stopped early: the record after the last one read (all records after a
        // record still in the spool are there too) must have broken a limit.
        prop_assert!(!got.is_empty(), "nothing read while {} waits", wanted[0].0);
        let last = got[got.len() - 1].0;
        let (&following, payload) = model.records.range(last + 1..).next().expect("a later record");
        prop_assert!(
            got.len() >= max_records || total + payload.len() > max_bytes,
            "stopped before {} without reaching a limit",
            following
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn behaves_like_a_model(
        segment_bytes in 24u64..400,
        max_bytes in 0u64..1500,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let tmp = TempDir::new("model");
        let config = config(&tmp.spool(), max_bytes, segment_bytes);
        let (mut spool, report) = Spool::open(config.clone()).unwrap();
        prop_assert_eq!(report, OpenReport::default());
        let mut model = Model { records: BTreeMap::new(), acked: 0, next: 1, full: 0, tag: 0 };
        for op in &ops {
            apply(&mut spool, &mut model, op, &config)?;
            check(&spool, &model, &config.dir)?;
        }
    }
}
