"""Load the DAG with Airflow's own parser (DagBag) and check what it promises.

Run: python deploy/airflow/check_dag.py   (with apache-airflow and
apache-airflow-providers-http installed; scripts/test.sh sets up a venv).
"""

import os
import sys
from datetime import timedelta

here = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("AIRFLOW_HOME", os.path.join(os.environ.get("TMPDIR", "/tmp"), "sluice-airflow-home"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

from airflow.models import DagBag  # noqa: E402

# The DAG file only: this script, beside it, must not be parsed as a DAG file itself.
bag = DagBag(dag_folder=os.path.join(here, "sluice_reports.py"), include_examples=False)
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


check(not bag.import_errors, f"imports without errors {dict(bag.import_errors)}")
# bag.dags, not get_dag(): get_dag asks the metadata database, which a parse check has no need of.
dag = bag.dags.get("sluice_reports")
check(dag is not None, "defines the DAG sluice_reports")
if dag is not None:
    interval = getattr(dag, "schedule_interval", None)
    check(interval == "@daily" or str(getattr(dag, "timetable", "")).find("daily") >= 0, f"runs @daily (got {interval})")
    check(dag.catchup is False, "catchup is off")
    start, wait = dag.get_task("start_reports"), dag.get_task("wait_for_reports")
    check(start.retries == 3 and wait.retries == 3 and start.retry_delay == timedelta(minutes=5), "tasks retry 3 times, 5 minutes apart")
    check(start.method == "POST" and start.endpoint == "/api/v1/jobs/reports/run", "starts the reports job through the admin API")
    check(type(start).__name__ == "HttpOperator" and type(wait).__name__ == "HttpSensor", "an HTTP operator starts it, an HTTP sensor waits")
    check(wait.upstream_task_ids == {"start_reports"}, "waits after starting")
    check("jobs/runs/" in wait.endpoint, "polls the run it started")

    # The callbacks against answers shaped like the admin API's.
    sys.path.insert(0, here)
    import sluice_reports as d  # noqa: E402

    class Resp:
        def __init__(self, body, status=200):
            self._b, self.status_code = body, status

        def json(self):
            return self._b

    check(d.run_id(Resp({"run": {"id": 7, "state": "queued"}}, 202)) == 7, "reads the run id from the answer")
    check(d.run_finished(Resp({"run": {"id": 7, "job": "reports", "state": "running"}})) is False, "keeps waiting while running")
    check(d.run_finished(Resp({"run": {"id": 7, "job": "reports", "state": "succeeded"}})) is True, "done when succeeded")
    try:
        d.run_finished(Resp({"run": {"id": 7, "job": "reports", "state": "failed", "error": "boom"}}))
        check(False, "a failed run fails the task")
    except Exception as e:  # AirflowException
        check("boom" in str(e), "a failed run fails the task, with the job's error")

print(f"{len(failures)} failed" if failures else "the DAG checks out")
sys.exit(1 if failures else 0)
