//! `doctor [--repair]`.

use std::io::IsTerminal;

use clap::Args;

use mstate_store::model::DoctorReport;

use crate::context::Context;
use crate::exit::{CliError, CliResult};
use crate::output::{note, Out};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Repair what is safe to repair (each repair is logged as an event).
    #[arg(long)]
    pub repair: bool,
}

pub fn cmd_doctor(ctx: &Context, a: &DoctorArgs) -> CliResult {
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut report = ctx.store.doctor(a.repair, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    // The store says what a repair does; the ways out beyond it name
    // commands, worded here.
    for f in &mut report.findings {
        if let Some(hint) = f.hint.take() {
            f.repair = format!("{}; {}", f.repair, crate::hints::word(&hint));
        }
    }
    let repaired = report.findings.iter().filter(|f| f.repaired).count();
    print_report(ctx, a, &report).map_err(|e| {
        if repaired == 0 {
            return e;
        }
        e.committed(|| format!("{repaired} of the findings were repaired"))
    })?;
    if report.clean() {
        Ok(())
    } else if ctx.global.json {
        // Like every failure under --json, the exit status comes with an
        // error object on stderr; the report itself is on stdout.
        let left = report.findings.iter().filter(|f| !f.repaired).count();
        let repairable = report.findings.iter().any(|f| !f.repaired && f.repairable);
        let hint = if a.repair || !repairable {
            "see the report on stdout"
        } else {
            "see the report on stdout; `mstate doctor --repair` repairs what it can"
        };
        Err(CliError::Other(format!(
            "the store is not clean: {left} of {} findings left; {hint}",
            report.findings.len()
        )))
    } else {
        Err(CliError::Exit(crate::exit::FAILURE))
    }
}

fn print_report(ctx: &Context, a: &DoctorArgs, report: &DoctorReport) -> CliResult {
    let mut out = Out::new();
    if ctx.global.json {
        out.json(&serde_json::json!({
            "clean": report.clean(),
            "checked": report.checked,
            "findings": report.findings,
        }))?;
    } else {
        for f in &report.findings {
            let action = if f.repaired {
                format!("repaired: {}", f.repair)
            } else if a.repair || !f.repairable {
                format!("not repaired: {}", f.repair)
            } else {
                format!("--repair would {}", f.repair)
            };
            out.line(&format!(
                "{}: {} [{}] ({action})",
                f.path, f.problem, f.kind
            ))?;
        }
        let left = report.findings.iter().filter(|f| !f.repaired).count();
        if report.findings.is_empty() {
            note(&format!(
                "store is clean ({} entries checked)",
                report.checked
            ));
        } else {
            note(&format!(
                "{} findings, {} repaired, {left} left ({} entries checked)",
                report.findings.len(),
                report.findings.len() - left,
                report.checked
            ));
        }
    }
    out.finish()
}
