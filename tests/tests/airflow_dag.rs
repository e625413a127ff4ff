//! The Airflow DAG in deploy/airflow, loaded by Airflow's own parser (DagBag)
//! with deploy/airflow/check_dag.py: it imports, runs @daily without catch-up,
//! retries, starts the `reports` job through the admin API and waits for it.
//!
//! scripts/test.sh installs Airflow in a venv and points SLUICE_AIRFLOW_PYTHON
//! at it. Without Airflow (a bare `cargo test`), only Python's syntax check
//! runs, and the test says so.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repository").to_path_buf()
}

#[test]
fn the_airflow_dag_loads_and_does_what_it_says() {
    let dag_dir = repo().join("deploy/airflow");
    match std::env::var("SLUICE_AIRFLOW_PYTHON") {
        Ok(python) => {
            let out = Command::new(&python)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .arg(dag_dir.join("check_dag.py"))
                .output()
                .unwrap_or_else(|e| panic!("running {python}: {e}"));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "the DAG check failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            assert!(stdout.contains("the DAG checks out"), "{stdout}");
        }
        Err(_) => {
            eprintln!("SLUICE_AIRFLOW_PYTHON is not set (scripts/test.sh sets it): only checking the DAG's Python syntax");
            for file in ["sluice_reports.py", "check_dag.py"] {
                // compile(), as py_compile does, without leaving __pycache__ in the repository.
                let code = "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')";
                let out = Command::new("python3").args(["-c", code]).arg(dag_dir.join(file)).output().expect("python3 runs");
                assert!(out.status.success(), "{file}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}
