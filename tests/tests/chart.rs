//! The Helm chart, rendered with the default and the full-featured values
//! of `helm/herald/ci/`, run against the binary: the migration hook exits 0,
//! the control plane and the edge start with exactly the manifests' command
//! lines, environment and mounted Secrets, answer every probe within the
//! manifests' budgets, and exit cleanly on SIGTERM. Each run has its own
//! PostgreSQL database, NATS subject prefix and ports chosen by the OS.
//! Skipped only where there is no python3.

use anyhow::Result;
use herald_tests::chart::{Inputs, plan, python_with_tools, run};
use herald_tests::{TestDb, nats_url, random_suffix, unique_prefix};

async fn chart_runs(values: &str) -> Result<()> {
    let Some(python) = python_with_tools()? else {
        eprintln!("skipped: no python3 to render the chart with");
        return Ok(());
    };
    let db = TestDb::create().await?;
    let prefix = unique_prefix();
    let workdir = std::env::temp_dir().join(format!("herald-chart-{values}-{}", random_suffix()));
    let nats = nats_url();
    let inputs = Inputs {
        python: &python,
        values,
        database_url: &db.url,
        nats_url: &nats,
        subject_prefix: &prefix,
        workdir: &workdir,
    };
    let outcome = async {
        let plan = plan(&inputs)?;
        eprintln!(
            "{}: Services {:?}; Secrets from outside the chart {:?}",
            plan.variant, plan.services, plan.outside_secrets
        );
        run(&plan, &workdir, &workdir.join("tls.crt")).await
    }
    .await;
    match outcome {
        Ok(report) => {
            for line in &report.lines {
                eprintln!("{values}: {line}");
            }
            let _ = std::fs::remove_dir_all(&workdir);
            Ok(())
        }
        // Keep the work directory (logs, mounted files) for a look.
        Err(e) => Err(e.context(format!("the chart with the {values} values (logs in {})", workdir.display()))),
    }
}

#[tokio::test]
async fn chart_default_values_run_against_the_binary() -> Result<()> {
    chart_runs("default").await
}

#[tokio::test]
async fn chart_full_values_run_against_the_binary() -> Result<()> {
    chart_runs("full").await
}
