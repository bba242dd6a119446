"""Seed a real MLflow tracking server through MLflow's own client (run with the mlflow venv).

Usage: python mlflow_seed.py TRACKING_URI MODEL_NAME WORKDIR
Writes WORKDIR/seed.json: each version's run id, params, metrics and artifact files.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path


def main() -> None:
    uri, name, workdir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    warnings.filterwarnings("ignore")
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    mlflow.set_experiment("fraud-training")
    client.create_registered_model(name, description="Fraud scorer, migrated from MLflow")
    versions = []
    for number, lr in enumerate(("0.1", "0.05", "0.01"), start=1):
        model_dir = workdir / f"model-{number}"
        (model_dir / "weights").mkdir(parents=True, exist_ok=True)
        (model_dir / "MLmodel").write_text(f"flavors:\n  python_function: {{}}\nrun: {number}\n")
        (model_dir / "weights" / "model.bin").write_bytes(os.urandom(2048) + bytes([number]))
        (model_dir / "requirements.txt").write_text("scikit-learn==1.5.0\n")
        tags = {
            "mlflow.source.git.commit": f"{number:040x}",
            "mlflow.source.git.branch": "main",
            "mlflow.source.git.repoURL": "https://git.example.com/team/fraud.git",
            "team": "risk",
        }
        with mlflow.start_run(tags=tags) as run:
            mlflow.log_params({"learning_rate": lr, "epochs": str(10 * number)})
            mlflow.log_metrics({"auc": 0.80 + number / 100, "loss": 0.5 / number})
            frame = pd.DataFrame({"amount": [1.0, 2.0], "label": [0, 1]})
            dataset = mlflow.data.from_pandas(frame, source="s3://data/fraud.csv", name="fraud-q3")
            mlflow.log_input(dataset, context="training")
            mlflow.log_artifacts(str(model_dir), artifact_path="model")
            source = f"runs:/{run.info.run_id}/model"
        version = client.create_model_version(
            name, source, run.info.run_id, description=f"version {number}", await_creation_for=0
        )
        files = {
            str(p.relative_to(model_dir)): p.read_bytes().hex()
            for p in sorted(model_dir.rglob("*"))
            if p.is_file()
        }
        versions.append(
            {
                "version": int(version.version),
                "runId": run.info.run_id,
                "params": {"learning_rate": lr, "epochs": str(10 * number)},
                "files": files,
            }
        )
    client.set_registered_model_alias(name, "champion", "2")
    with warnings.catch_warnings():
        client.transition_model_version_stage(name, "3", "Staging")
        client.transition_model_version_stage(name, "2", "Production")
    (workdir / "seed.json").write_text(json.dumps({"model": name, "versions": versions}))


if __name__ == "__main__":
    main()
