"""Per-site CSV files made from scikit-learn's breast-cancer table: each site holds different rows."""

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer


def write_sites(root, sizes=(150, 200, 219), seed=0, columns=8):
    """Write site-K.csv files (record_id, 8 features, label 'benign'/'malignant'); returns their paths."""
    b = load_breast_cancer()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(b.target))
    paths, start = [], 0
    root.mkdir(parents=True, exist_ok=True)
    for k, n in enumerate(sizes):
        rows = order[start:start + n]
        start += n
        df = pd.DataFrame(b.data[rows, :columns], columns=[f"f{j}" for j in range(columns)])
        df.insert(0, "record_id", [f"patient-{k}-{i}" for i in rows])
        df["label"] = np.where(b.target[rows] == 1, "benign", "malignant")
        path = root / f"site-{k}.csv"
        df.to_csv(path, index=False)
        paths.append(path)
    return paths
