//! Agent overhead on exec and connect storms (arms alternated in rounds), and
//! completeness at rising parallelism.

use crate::rig::{Arm, ArmRun, Rig, Storm};
use crate::stats::{Ratios, median};

#[derive(Debug, serde::Serialize)]
pub struct Overhead {
    pub storm: &'static str,
    pub count: u64,
    pub rounds: Vec<Vec<ArmRun>>,
    /// Rate under each watching arm relative to no agent, per round.
    pub vs_no_agent: Vec<(&'static str, Ratios)>,
    /// Median watcher CPU seconds per 1,000 storm operations, per arm.
    pub cpu_per_1000: Vec<(&'static str, f64)>,
    /// Median server CPU seconds per 1,000 operations (full pipeline).
    pub server_cpu_per_1000: f64,
    /// Full pipeline over all rounds: operations made, storm events stored, losses.
    pub made: u64,
    pub stored: u64,
    pub lost: u64,
}

pub fn overhead(rig: &mut Rig, storm: Storm, count: u64, rounds: usize) -> anyhow::Result<Overhead> {
    let mut all: Vec<Vec<ArmRun>> = Vec::new();
    for round in 0..rounds {
        // ABCD, DCBA, BCDA, ADCB...: every arm runs early and late.
        let mut order: Vec<Arm> = Arm::ALL.to_vec();
        let arms = order.len();
        order.rotate_left(round / 2 % arms);
        if round % 2 == 1 {
            order.reverse();
        }
        let mut runs = Vec::new();
        for arm in order {
            let run = rig.run(storm, arm, count, 1)?;
            eprintln!(
                "{} storm round {round}: {:<26} {:>8.0}/s cpu {:.3} s seen {:?} lost {}",
                storm.name(),
                arm.name(),
                run.rate,
                run.watcher_cpu_s,
                run.seen,
                run.lost
            );
            runs.push(run);
        }
        runs.sort_by_key(|r| Arm::ALL.iter().position(|a| a.name() == r.arm));
        all.push(runs);
    }
    let rate =
        |round: &[ArmRun], arm: Arm| round.iter().find(|r| r.arm == arm.name()).map_or(0.0, |r| r.rate);
    let mut vs_no_agent = Vec::new();
    let mut cpu_per_1000 = Vec::new();
    for arm in [Arm::CountOnly, Arm::Full, Arm::Auditd] {
        let mut ratios = Ratios::default();
        let mut cpu = Vec::new();
        for round in &all {
            ratios.push(rate(round, arm), rate(round, Arm::NoAgent));
            if let Some(run) = round.iter().find(|r| r.arm == arm.name()) {
                cpu.push(run.watcher_cpu_s * 1000.0 / run.made as f64);
            }
        }
        vs_no_agent.push((arm.name(), ratios));
        cpu_per_1000.push((arm.name(), median(&cpu)));
    }
    let full: Vec<&ArmRun> = all
        .iter()
        .flatten()
        .filter(|r| r.arm == Arm::Full.name())
        .collect();
    let server_cpu: Vec<f64> = full
        .iter()
        .map(|r| r.server_cpu_s * 1000.0 / r.made as f64)
        .collect();
    Ok(Overhead {
        storm: storm.name(),
        count,
        vs_no_agent,
        cpu_per_1000,
        server_cpu_per_1000: median(&server_cpu),
        made: full.iter().map(|r| r.made).sum(),
        stored: full.iter().map(|r| r.seen.unwrap_or(0)).sum(),
        lost: full.iter().map(|r| r.lost).sum(),
        rounds: all,
    })
}

#[derive(Debug, serde::Serialize)]
pub struct Step {
    pub parallel: usize,
    pub no_agent_rate: f64,
    pub full_rate: f64,
    pub made: u64,
    pub stored: u64,
    pub lost: u64,
}

impl Step {
    #[must_use]
    pub fn loss_free(&self) -> bool {
        self.stored == self.made && self.lost == 0
    }
}

#[derive(Debug, serde::Serialize)]
pub struct Completeness {
    pub storm: &'static str,
    pub steps: Vec<Step>,
    /// The highest loss-free full-pipeline rate over the best no-agent rate.
    pub loss_free_fraction: f64,
    /// The first parallelism with loss, if any.
    pub first_loss_at: Option<usize>,
}

pub fn completeness(
    rig: &mut Rig,
    storm: Storm,
    count: u64,
    parallelism: &[usize],
) -> anyhow::Result<Completeness> {
    let mut steps = Vec::new();
    for &parallel in parallelism {
        let none = rig.run(storm, Arm::NoAgent, count, parallel)?;
        let full = rig.run(storm, Arm::Full, count, parallel)?;
        let step = Step {
            parallel,
            no_agent_rate: none.rate,
            full_rate: full.rate,
            made: full.made,
            stored: full.seen.unwrap_or(0),
            lost: full.lost,
        };
        eprintln!(
            "{} completeness at {parallel} in parallel: {}/{} stored, lost {}, {:.0}/s (no agent {:.0}/s)",
            storm.name(),
            step.stored,
            step.made,
            step.lost,
            step.full_rate,
            step.no_agent_rate
        );
        let lossy = !step.loss_free();
        steps.push(step);
        if lossy {
            break;
        }
    }
    let best_none = steps.iter().map(|s| s.no_agent_rate).fold(0.0, f64::max);
    let best_loss_free = steps
        .iter()
        .filter(|s| s.loss_free())
        .map(|s| s.full_rate)
        .fold(0.0, f64::max);
    Ok(Completeness {
        storm: storm.name(),
        first_loss_at: steps.iter().find(|s| !s.loss_free()).map(|s| s.parallel),
        loss_free_fraction: if best_none > 0.0 {
            best_loss_free / best_none
        } else {
            0.0
        },
        steps,
    })
}
