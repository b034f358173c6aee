"""Optimizers by name, parameter groups for L2 and the L1 penalty.

Each entry (`OptimizerEntry`, registered with `register_optimizer`) holds its factory, which takes (param_groups,
OptimConfig) and returns a torch optimizer, its update equations and its own defaults. All but one are torch's own;
`RMSpropNesterov` is written here because torch has none (Goodfellow, Bengio & Courville, *Deep Learning*, 2016,
Algorithm 8.6; Hinton's Coursera lecture 6e).

L2 is coupled weight decay (torch's `weight_decay`: the gradient gets `wd * w`, i.e. the loss gets `wd/2 * |w|^2`),
except for AdamW where it is decoupled (Loshchilov & Hutter 2019). L1 is a loss term `l1 * sum|w|`. By default both
apply to weights only: biases and normalisation parameters (every parameter with fewer than 2 dimensions) are left
alone, since decaying them constrains nothing useful and hurts BN networks (`optim.decay_bias_norm` turns it on).

Three parts of Jordan 2024 (airbench94, arXiv:2404.00498) live here as options, off by default, so that the fast
recipe's ablation (issue #26, benchmarks/ablate_fast.py) is a list of overrides:
- `optim.bias_lr_scale`: the biases of normalisation layers (or every bias) train at this multiple of the lr, in a
  group of their own whose coupled weight decay is divided by the same factor, so that the decay per step (lr x wd)
  stays the other groups' (Jordan's `bias_scaler`, 64). The group records its `lr_scale`, and every schedule keeps
  the ratio (schedules.py).
- parameters a model trains only for its first epochs (`parameter_epochs()`, e.g. fastcnn's `whiten_bias_epochs`)
  get a group of their own marked `train_epochs`; the schedule sets that group's lr to 0 from then on, which leaves
  the parameter exactly as it is under every optimizer here.
- `optim.lookahead_k` > 0: Lookahead (Zhang et al. 2019), written here as step hooks on the optimizer rather than a
  wrapper class, so that schedules, GradScaler and checkpoints see the optimizer they know; its slow weights are
  optimizer state and its step count a group entry, so `state_dict()` holds them and a resumed run takes the same
  next step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from cnnlab.registry import Registry

OPTIMIZERS = Registry("optimizer")


NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)  # _NormBase: BatchNorm*d, InstanceNorm*d


def param_groups(model: nn.Module, weight_decay: float, decay_bias_norm: bool, bias_lr_scale: float = 1.0,
                 bias_lr_params: str = "norm") -> List[Dict]:
    """Weights (get L2/L1) first, then biases/norm parameters (do not, unless decay_bias_norm); with the defaults
    these are the only two groups. Parameters whose lr is scaled (`bias_lr_scale` on `bias_lr_params`: "norm", the
    biases of normalisation layers, or "all", every bias) and parameters the model trains for a limited number of
    epochs (its `parameter_epochs()`) get groups of their own, marked `lr_scale` / `train_epochs`."""
    scaled = _scaled_names(model, bias_lr_params) if bias_lr_scale != 1 else set()
    epochs_of = dict(getattr(model, "parameter_epochs", dict)())
    keyed: Dict[tuple, List] = {(True, 1.0, None): []}  # the weights' group comes first even if empty, as always
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        key = (decay_bias_norm or p.ndim > 1, bias_lr_scale if name in scaled else 1.0, epochs_of.get(name))
        keyed.setdefault(key, []).append(p)
    groups = []
    for (penalised, scale, epochs), params in sorted(keyed.items(), key=lambda kv: (not kv[0][0], kv[0][1] != 1,
                                                                                   kv[0][2] or 0)):
        if not params and groups:
            continue
        # the decay per step is lr x wd: a group at scale x the lr gets wd / scale, so it decays as the others do
        group = {"params": params, "weight_decay": weight_decay / scale if penalised else 0.0, "penalised": penalised}
        if scale != 1:
            group["lr_scale"] = scale
        if epochs is not None:
            group["train_epochs"] = epochs
        groups.append(group)
    return groups


def _scaled_names(model: nn.Module, which: str) -> set:
    """Names of the parameters `optim.bias_lr_params` picks: "norm", the shifts of normalisation layers (Jordan
    2024's BN biases), or "all", every bias."""
    if which == "all":
        return {n for n, _ in model.named_parameters() if n.rsplit(".", 1)[-1] == "bias"}
    return {f"{m_name}.bias" if m_name else "bias" for m_name, m in model.named_modules()
            if isinstance(m, NORM_LAYERS) and getattr(m, "bias", None) is not None}


def l1_penalty(optimizer: torch.optim.Optimizer) -> torch.Tensor:
    """sum |w| over the penalised parameter group(s) of `optimizer` (multiply by optim.l1)."""
    params = [p for g in optimizer.param_groups if g.get("penalised", True) for p in g["params"]]
    return torch.stack([p.abs().sum() for p in params]).sum()


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer, everything about it in one place (timm's OptimInfo): how to build it, the `optim.*` keys it
    reads, the defaults it wants where they differ from the config schema's (Lion's betas are not Adam's), and its
    update as cnnlab runs it (HW3 1.1), which `cnnlab optimizers` and the optimizer reference print. In the
    equations g is the gradient of the step's loss (plus wd*w for coupled L2), eta the lr, w the weights; every
    operation is per element."""
    factory: Callable  # (param_groups, OptimConfig) -> torch.optim.Optimizer
    title: str         # the name in words, with its reference
    equations: Tuple[str, ...]
    keys: Tuple[str, ...]                                  # the optim.* keys it reads
    defaults: Dict[str, Any] = field(default_factory=dict)  # optim.* values of its own, applied when a config does
    #                                                         not set them (training/config.py, load_config)

    def __call__(self, groups, cfg) -> torch.optim.Optimizer:
        return self.factory(groups, cfg)


def register_optimizer(name: str, title: str, equations: Sequence[str], keys: Sequence[str],
                       defaults: Optional[Dict[str, Any]] = None) -> Callable:
    """Decorate a factory `(param_groups, OptimConfig) -> torch.optim.Optimizer`: registering is all a new optimizer
    needs (config check, defaults, `cnnlab optimizers`, the reference). A key of `defaults` must be a key it reads."""
    def deco(factory: Callable) -> Callable:
        unread = set(defaults or ()) - set(keys)
        if unread:
            raise ValueError(f"optimizer {name!r}: defaults for keys it does not read: {', '.join(sorted(unread))}")
        OPTIMIZERS.register(name)(OptimizerEntry(factory, title, tuple(equations), tuple(keys), dict(defaults or {})))
        return factory

    return deco


def optimizer_defaults(name: Any) -> Dict[str, Any]:
    """The `optim.*` defaults of optimizer `name` that differ from the schema's ({} for an unknown name: the config
    check reports it)."""
    return dict(OPTIMIZERS.get(name).defaults) if name in OPTIMIZERS else {}


def describe_optimizer(name: str, defaults: Dict[str, tuple]) -> List[str]:
    """Lines for `cnnlab optimizers`: the title, the update equations and each hyperparameter's config key, default
    and meaning (`defaults`: dotted key -> (default, help), from the config schema; the optimizer's own defaults
    win)."""
    entry = OPTIMIZERS.get(name)  # an unknown name fails with the list of known ones
    out = [f"{name}: {entry.title}", *(f"    {line}" for line in entry.equations), "  hyperparameters:"]
    for k in entry.keys:
        default, meaning = defaults[f"optim.{k}"]
        out.append(f"    optim.{k} = {entry.defaults.get(k, default)!r:<8} {meaning}")
    return out


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.decay_bias_norm, cfg.bias_lr_scale, cfg.bias_lr_params)
    for g in groups:
        if "lr_scale" in g:
            g["lr"] = cfg.lr * g["lr_scale"]
    optimizer = OPTIMIZERS.get(cfg.name)(groups, cfg)
    if cfg.lookahead_k:
        add_lookahead(optimizer, cfg.lookahead_k, cfg.lookahead_alpha, cfg.lookahead_ramp)
    return optimizer


LOOKAHEAD_RAMPS = ("none", "cubic")


def add_lookahead(optimizer: torch.optim.Optimizer, k: int, alpha: float, ramp: str = "none") -> None:
    """Lookahead (Zhang et al. 2019) on `optimizer`: after every k-th step the slow weights move `alpha` of the way
    to the (fast) weights, and the weights are set to them: slow <- slow + alpha*(fast - slow); fast <- slow.

    ramp "none" keeps alpha constant (Zhang et al.: k=5, alpha=0.5); "cubic" is airbench94's: alpha falls from 1
    (no averaging) at the first step to `alpha` at the last, as 1 - (1 - alpha)*(t/T)^3 (Jordan 2024: k=5,
    alpha = 1 - 0.95^5 = 0.226), over the T steps the schedule plans (`plan_lookahead`, called by build_schedule;
    past T alpha stays at its end value). Unlike airbench, BN running statistics are not averaged (they are not the
    optimizer's), and the run ends on the fast weights of its last step.

    The slow weights are optimizer state (`state[p]["lookahead_slow"]`) and the step count and settings are group
    entries, so the optimizer's state_dict() holds everything a resumed run needs. The slow weights start as the
    weights before the first step; they are moved into the state after it, since some optimizers (Adam) initialise
    their state only when it is empty."""
    if ramp not in LOOKAHEAD_RAMPS:
        raise ValueError(f"lookahead ramp {ramp!r}: use one of {', '.join(LOOKAHEAD_RAMPS)}")
    for g in optimizer.param_groups:
        g.update(lookahead_k=int(k), lookahead_alpha=float(alpha), lookahead_ramp=ramp, lookahead_step=0,
                 lookahead_total=g.get("lookahead_total"))
    start: Dict[torch.Tensor, torch.Tensor] = {}

    def before(opt, args, kwargs):
        for g in opt.param_groups:
            for p in g["params"]:
                if p not in start and "lookahead_slow" not in opt.state.get(p, {}):
                    start[p] = p.detach().clone()

    optimizer.register_step_pre_hook(before)
    optimizer.register_step_post_hook(lambda opt, args, kwargs: _lookahead_sync(opt, start))


@torch.no_grad()
def _lookahead_sync(opt: torch.optim.Optimizer, start: Dict[torch.Tensor, torch.Tensor]) -> None:
    """After a step: the slow weights join the state once the step made it, and every k-th step they move alpha of
    the way to the fast weights, which are then set to them."""
    for p in [p for p in start if p.grad is not None]:  # a parameter the step skipped has no state to join yet
        opt.state[p]["lookahead_slow"] = start.pop(p)
    for g in opt.param_groups:
        g["lookahead_step"] += 1
        n, k = g["lookahead_step"], g["lookahead_k"]
        if n % k:
            continue
        a = lookahead_alpha(g["lookahead_alpha"], g["lookahead_ramp"], n, g["lookahead_total"])
        for p in g["params"]:
            slow = opt.state.get(p, {}).get("lookahead_slow")
            if slow is not None:
                slow.lerp_(p, a)
                p.copy_(slow)


def lookahead_alpha(alpha: float, ramp: str, step: int, total: Optional[int]) -> float:
    """The share of the way to the fast weights the slow ones move at `step` (1-based) of `total`."""
    if ramp == "none" or not total:
        return alpha
    return 1 - (1 - alpha) * min(1.0, step / total) ** 3


def plan_lookahead(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    """Tell a Lookahead ramp how many steps the run plans (build_schedule knows; the optimizer does not). A resumed
    run's checkpoint then puts back the total it started with."""
    for g in optimizer.param_groups:
        if "lookahead_k" in g:
            g["lookahead_total"] = int(total_steps)


@register_optimizer("sgd", "SGD with momentum (Polyak 1964; torch's form); nesterov: Sutskever et al. 2013",
                    ["v <- momentum*v + g", "w <- w - eta*v                      (plain momentum)",
                     "w <- w - eta*(g + momentum*v)       (nesterov: the look-ahead gradient step)"],
                    ("lr", "momentum", "nesterov", "weight_decay"))
def _sgd(groups, cfg):
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


@register_optimizer("adagrad", "Adagrad (Duchi, Hazan & Singer 2011)",
                    ["r <- r + g^2", "w <- w - eta*g / (sqrt(r) + eps)"], ("lr", "eps", "weight_decay"))
def _adagrad(groups, cfg):
    return torch.optim.Adagrad(groups, lr=cfg.lr, eps=cfg.eps)


@register_optimizer("rmsprop", "RMSprop (Hinton, Coursera lecture 6e; Goodfellow et al. 2016, Alg. 8.5)",
                    ["r <- alpha*r + (1-alpha)*g^2", "v <- momentum*v + g / (sqrt(r) + eps)", "w <- w - eta*v"],
                    ("lr", "alpha", "eps", "momentum", "weight_decay"))
def _rmsprop(groups, cfg):
    return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum)


@register_optimizer("rmsprop_nesterov", "RMSprop with Nesterov momentum (Goodfellow et al. 2016, Alg. 8.6; written "
                    "here)", ["g at the look-ahead point w~ = w + momentum*v", "r <- alpha*r + (1-alpha)*g^2",
                              "v <- momentum*v - eta*g / sqrt(r + eps)", "w <- w + v"],
                    ("lr", "alpha", "eps", "momentum", "weight_decay"))
def _rmsprop_nesterov(groups, cfg):
    return RMSpropNesterov(groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum)


@register_optimizer("adadelta", "Adadelta (Zeiler 2012)",
                    ["r <- rho*r + (1-rho)*g^2", "d <- sqrt(u + eps) / sqrt(r + eps) * g",
                     "u <- rho*u + (1-rho)*d^2", "w <- w - eta*d   (eta = 1 in the paper)"],
                    ("lr", "rho", "eps", "weight_decay"))
def _adadelta(groups, cfg):
    # Adadelta's lr scales its unit-correct step; Zeiler (2012) uses 1.0.
    return torch.optim.Adadelta(groups, lr=cfg.lr, rho=cfg.rho, eps=cfg.eps)


@register_optimizer("adam", "Adam (Kingma & Ba 2015)",
                    ["m <- beta1*m + (1-beta1)*g", "v <- beta2*v + (1-beta2)*g^2",
                     "m^ = m/(1-beta1^t), v^ = v/(1-beta2^t)", "w <- w - eta*m^ / (sqrt(v^) + eps)"],
                    ("lr", "betas", "eps", "weight_decay"))
def _adam(groups, cfg):
    return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


@register_optimizer("adamw", "AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay",
                    ["m, v, m^, v^ as Adam, on g without the L2 term", "w <- w - eta*(m^ / (sqrt(v^) + eps) + wd*w)"],
                    ("lr", "betas", "eps", "weight_decay"))
def _adamw(groups, cfg):
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)


class RMSpropNesterov(torch.optim.Optimizer):
    r"""RMSprop with Nesterov momentum (Goodfellow et al. 2016, Algorithm 8.6).

    The textbook form evaluates the gradient at the look-ahead point :math:`\tilde\theta = \theta + \mu v`:

    .. math::
        g = \nabla L(\tilde\theta) + \lambda \tilde\theta, \quad
        r \leftarrow \alpha r + (1-\alpha) g^2, \quad
        v \leftarrow \mu v - \eta\, g / (\sqrt{r} + \epsilon), \quad
        \theta \leftarrow \theta + v.

    Like torch's Nesterov SGD, we store the look-ahead point itself as the parameter (:math:`p = \theta + \mu v`),
    so the loss is always evaluated at ``p`` and one gradient per step suffices. Substituting gives the update
    actually applied:

    .. math::
        v' = \mu v - \eta\, g / (\sqrt{r'} + \epsilon), \qquad p \leftarrow p + \mu v' - \eta\, g / (\sqrt{r'} + \epsilon).

    With momentum 0 this is plain RMSprop (torch's `RMSprop`, non-centred).
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.9, weight_decay: float = 0.0):
        if lr <= 0 or not 0 <= alpha < 1 or not 0 <= momentum < 1 or eps <= 0:
            raise ValueError(f"invalid RMSpropNesterov hyperparameters lr={lr} alpha={alpha} momentum={momentum}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, alpha, eps, mu, wd = (group[k] for k in ("lr", "alpha", "eps", "momentum", "weight_decay"))
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad if wd == 0 else p.grad.add(p, alpha=wd)
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                    state["velocity"] = torch.zeros_like(p)
                r, v = state["square_avg"], state["velocity"]
                r.mul_(alpha).addcmul_(g, g, value=1 - alpha)
                scaled = g / (r.sqrt() + eps)
                v.mul_(mu).add_(scaled, alpha=-lr)
                p.add_(v, alpha=mu).add_(scaled, alpha=-lr)
        return loss
