"""PyTorch's trajectories for the optimiser tests of crates/dcl-train/src/optimizer.rs.

Reads one JSON object on stdin:
  {"problem": {"w": [[..]], "b": [..], "u": [..], "x": [[..]], "y": [[..]], "c": [..], "d": [..],
               "u_steps": [..]},
   "cases": [{"first": H, "then": H, "switch": k, "steps": n}, ..]}
where H is RegimeOptimizer's hyper-parameter JSON (its `state`'s). For each case it builds
PyTorch's optimiser from `first` over the groups [{w, u}, {b}] (b's group without weight
decay when `no_decay_on_norm_and_bias`), then takes `steps` times zero_grad, backward, step on
  ((x w - y)^2).mean() + ((b - c)^2).sum() [+ ((u - d)^2).sum() at the steps in u_steps],
switching the groups' hyper-parameters to `then` before step `switch`, as the Rust test does
with `RegimeOptimizer::apply`. u has no gradient at the other steps: PyTorch skips it there.

Writes a JSON list with, per case, the values of w, b and u (flattened, concatenated) after
every step.
"""

import json
import sys

import torch


def build(h, groups):
    """PyTorch's optimiser of kind h["optimizer"] with h's hyper-parameters."""
    kind = h["optimizer"]
    common = dict(lr=h["lr"], weight_decay=h["weight_decay"], foreach=False)
    if kind == "SGD":
        return torch.optim.SGD(
            groups, momentum=h["momentum"], dampening=h["dampening"], nesterov=h["nesterov"], **common
        )
    if kind in ("Adam", "AdamW"):
        cls = torch.optim.Adam if kind == "Adam" else torch.optim.AdamW
        return cls(groups, betas=tuple(h["betas"]), eps=h["eps"], **common)
    if kind == "RMSprop":
        return torch.optim.RMSprop(groups, alpha=h["alpha"], eps=h["eps"], momentum=h["momentum"], **common)
    raise ValueError(kind)


def set_hyperparameters(optimizer, h):
    """What RegimeOptimizer::apply does within a kind: every group takes h's values."""
    for index, group in enumerate(optimizer.param_groups):
        exempt = index == 1 and h["no_decay_on_norm_and_bias"]
        group["lr"] = h["lr"]
        group["weight_decay"] = 0.0 if exempt else h["weight_decay"]
        if "momentum" in group:
            group["momentum"] = h["momentum"]
        for key in ("dampening", "nesterov", "eps", "alpha"):
            if key in group:
                group[key] = h[key]
        if "betas" in group:
            group["betas"] = tuple(h["betas"])


def trajectory(problem, case):
    tensor = lambda key: torch.tensor(problem[key], dtype=torch.float32)
    w, b, u = (tensor(k).requires_grad_() for k in "wbu")
    x, y, c, d = (tensor(k) for k in "xycd")
    first = case["first"]
    groups = [{"params": [w, u]}, {"params": [b]}]
    optimizer = build(first, groups)
    set_hyperparameters(optimizer, first)
    values = []
    for step in range(case["steps"]):
        if step == case["switch"]:
            set_hyperparameters(optimizer, case["then"])
        optimizer.zero_grad()
        loss = (x @ w - y).square().mean() + (b - c).square().sum()
        if step in problem["u_steps"]:
            loss = loss + (u - d).square().sum()
        loss.backward()
        optimizer.step()
        values.append([float(v) for t in (w, b, u) for v in t.detach().flatten()])
    return values


def main():
    request = json.load(sys.stdin)
    json.dump([trajectory(request["problem"], case) for case in request["cases"]], sys.stdout)


if __name__ == "__main__":
    main()
