"""quickstart-unlearning: a Flower ClientApp. unlearn-fl's lines are marked."""

from flwr.clientapp import ClientApp

from quickstart_unlearning.task import Net, load_data
from unlearn_fl.engine.client import LocalData, UnlearningClient  # unlearn-fl


def local_data(context):
    train, holdout, ids = load_data(context.node_config["partition-id"], context.node_config["num-partitions"])
    return LocalData(train=train, holdout=holdout, record_ids=ids)  # unlearn-fl


app = ClientApp()
UnlearningClient(model_fn=Net, data_fn=local_data).register(app)  # unlearn-fl: train, unlearn, evaluate, audit, ...
