"""quickstart-unlearning: a Flower ServerApp. unlearn-fl's lines are marked."""

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from quickstart_unlearning.task import Net
from unlearn_fl.config import UnlearningSettings, WithdrawalPlan  # unlearn-fl
from unlearn_fl.engine.server import UnlearningStrategy  # unlearn-fl

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    settings = UnlearningSettings(  # unlearn-fl
        num_clients=int(rc["num-sites"]),
        withdrawals=[WithdrawalPlan(client_ids=(int(rc["withdraw-client"]),))] if int(rc["withdraw-client"]) >= 0 else [],
        requests_dir=rc["requests-dir"] or None, unlearn_rounds=int(rc["unlearn-rounds"]), reference=bool(rc["reference"]),
        model_name=str(rc["model-name"]), tracking_uri=str(rc["tracking-uri"]), out=str(rc["out"]), seed=int(rc["seed"]))
    torch.manual_seed(int(rc["seed"]))
    strategy = UnlearningStrategy(FedAvg(fraction_evaluate=0.0), model_fn=Net, settings=settings)  # unlearn-fl
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(Net().state_dict()), num_rounds=int(rc["num-server-rounds"]),
                            train_config=ConfigRecord({"lr": float(rc["lr"]), "local-epochs": int(rc["local-epochs"]),
                                                       "batch-size": int(rc["batch-size"])}))
    print("final accuracy by round:", {r: round(m["accuracy"], 3) for r, m in result.evaluate_metrics_serverapp.items()})
