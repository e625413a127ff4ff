"""Daily sluice reports, for teams that already run Airflow.

sluice runs its reports on its own schedule (`[jobs.schedule]` in sluice.toml,
daily at 00:00 UTC by default). Where Airflow owns the schedule instead, turn
that off (`[jobs] schedule = {}`) and let this DAG start the `reports` job
through the admin API and wait for it to end.

Set up once:
  airflow connections add sluice_admin --conn-type http \
      --conn-host http://sluice.internal --conn-port 8080 --conn-password "$SLUICE_ADMIN_TOKEN"
Needs apache-airflow-providers-http. The connection id can be changed with the
Airflow variable `sluice_conn_id`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from airflow import DAG
from airflow.exceptions import AirflowException
from airflow.providers.http.operators.http import HttpOperator
from airflow.providers.http.sensors.http import HttpSensor

CONN_ID = "{{ var.value.get('sluice_conn_id', 'sluice_admin') }}"
# The admin API takes the token as a bearer token; it is kept as the connection's password.
AUTH = {"Authorization": "Bearer {{ conn[var.value.get('sluice_conn_id', 'sluice_admin')].password }}"}
JOB = "reports"


def run_id(response) -> int:
    """The id of the run the admin API started (202 Accepted)."""
    return int(response.json()["run"]["id"])


def run_finished(response) -> bool:
    """True once the run succeeded; a failed run fails the task (and Airflow retries it)."""
    run = response.json()["run"]
    if run["state"] == "failed":
        raise AirflowException(f"sluice job {run['job']} run {run['id']} failed: {run.get('error')}")
    return run["state"] == "succeeded"


with DAG(
    dag_id="sluice_reports",
    description="Run sluice's nine reports through its admin API and wait for them",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "data-engineering",
        "retries": 3,
        "retry_delay": timedelta(minutes=5),
        "retry_exponential_backoff": True,
    },
    tags=["sluice", "reports"],
) as dag:
    start = HttpOperator(
        task_id="start_reports",
        http_conn_id=CONN_ID,
        method="POST",
        endpoint=f"/api/v1/jobs/{JOB}/run",
        headers={**AUTH, "Content-Type": "application/json"},
        data=json.dumps({}),
        # 202: started. 409 means a run is already going (the built-in schedule?): fail and retry.
        response_check=lambda response: response.status_code == 202,
        response_filter=run_id,
        log_response=True,
    )

    wait = HttpSensor(
        task_id="wait_for_reports",
        http_conn_id=CONN_ID,
        method="GET",
        endpoint="/api/v1/jobs/runs/{{ ti.xcom_pull(task_ids='start_reports') }}",
        headers=AUTH,
        response_check=run_finished,
        poke_interval=30,
        timeout=2 * 60 * 60,
        mode="reschedule",
    )

    start >> wait
