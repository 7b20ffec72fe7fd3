# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Deep-learning theory questions
#
# Each answer is given in Markdown and, wherever a claim can be checked numerically, checked in code
# with an `assert`. Everything runs on CPU in a few seconds (`python notebooks/run.py theory`
# re-executes this notebook; its source is `notebooks/theory.py`, paired with it by jupytext).

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# %config InlineBackend.figure_format = "png"
plt.rcParams["figure.dpi"] = 90
torch.manual_seed(0)
np.random.seed(0)
T_START = time.perf_counter()
print("torch", torch.__version__, "| numpy", np.__version__)


# %% [markdown]
# ## 1. Backpropagation by hand: 2 inputs → 2 hidden (tanh) → 1 output (sigmoid)
#
# **Network and naming.** Inputs $x_1, x_2$; target $t$.
#
# $$
# \begin{aligned}
# z_1 &= w_1 x_1 + w_2 x_2 + b_1, & h_1 &= \tanh z_1,\\
# z_2 &= w_3 x_1 + w_4 x_2 + b_2, & h_2 &= \tanh z_2,\\
# z_o &= w_5 h_1 + w_6 h_2 + b_3, & y &= \sigma(z_o) = \frac{1}{1+e^{-z_o}} .
# \end{aligned}
# $$
#
# So $w_1, w_2$ feed hidden unit 1, $w_3, w_4$ feed hidden unit 2 (input → hidden), and $w_5, w_6$
# connect $h_1, h_2$ to the output. The biases $b_1, b_2, b_3$ are **not** counted among the six
# weights, but they are trained too; their rule is the same with input $1$ (below).
#
# **Loss convention.** One sample, $L = \tfrac12 (y - t)^2$. The $\tfrac12$ makes
# $\partial L / \partial y = y - t$ (no factor 2). For a mini-batch with the *mean* of this loss,
# every gradient below is averaged over the batch (i.e. divided by the batch size).
#
# **Derivatives used.** $\sigma'(z) = \sigma(z)(1-\sigma(z))$, $\tanh'(z) = 1 - \tanh^2 z$.
#
# **Chain rule.** Define the "error signals" $\delta = \partial L / \partial z$ of each unit:
#
# $$
# \delta_o = \frac{\partial L}{\partial z_o} = (y - t)\, y (1 - y),
# \qquad
# \delta_{h_1} = \frac{\partial L}{\partial z_1} = \delta_o\, w_5\, (1 - h_1^2),
# \qquad
# \delta_{h_2} = \frac{\partial L}{\partial z_2} = \delta_o\, w_6\, (1 - h_2^2).
# $$
#
# Each weight gradient is (δ of the unit the weight feeds) × (the input it multiplies):
#
# | weight | $\partial L / \partial w$ | update ($\eta$ = learning rate) |
# |---|---|---|
# | $w_1$ ($x_1 \to h_1$) | $\delta_{h_1} x_1 = (y-t)\,y(1-y)\,w_5(1-h_1^2)\,x_1$ | $w_1 \leftarrow w_1 - \eta\, \delta_{h_1} x_1$ |
# | $w_2$ ($x_2 \to h_1$) | $\delta_{h_1} x_2 = (y-t)\,y(1-y)\,w_5(1-h_1^2)\,x_2$ | $w_2 \leftarrow w_2 - \eta\, \delta_{h_1} x_2$ |
# | $w_3$ ($x_1 \to h_2$) | $\delta_{h_2} x_1 = (y-t)\,y(1-y)\,w_6(1-h_2^2)\,x_1$ | $w_3 \leftarrow w_3 - \eta\, \delta_{h_2} x_1$ |
# | $w_4$ ($x_2 \to h_2$) | $\delta_{h_2} x_2 = (y-t)\,y(1-y)\,w_6(1-h_2^2)\,x_2$ | $w_4 \leftarrow w_4 - \eta\, \delta_{h_2} x_2$ |
# | $w_5$ ($h_1 \to y$) | $\delta_o h_1 = (y-t)\,y(1-y)\,h_1$ | $w_5 \leftarrow w_5 - \eta\, \delta_o h_1$ |
# | $w_6$ ($h_2 \to y$) | $\delta_o h_2 = (y-t)\,y(1-y)\,h_2$ | $w_6 \leftarrow w_6 - \eta\, \delta_o h_2$ |
# | $b_1, b_2, b_3$ | $\delta_{h_1},\ \delta_{h_2},\ \delta_o$ | $b \leftarrow b - \eta\, \delta$ |
#
# The update is **simultaneous**: all gradients are computed with the old weights (in particular
# $\delta_{h_1}, \delta_{h_2}$ use the old $w_5, w_6$) before any weight is changed.
#
# Below: the same formulas in numpy (float64), vectorised over $n$ independent networks, checked
# against `torch.autograd` on 1000 random (input, target, weights) settings.


# %%
def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward_backward(x, t, w, b):
    # n independent networks at once. x: (n, 2), t: (n,), w: (n, 6) = w1..w6, b: (n, 3) = b1..b3.
    x1, x2 = x.T
    w1, w2, w3, w4, w5, w6 = w.T
    b1, b2, b3 = b.T
    h1 = np.tanh(w1 * x1 + w2 * x2 + b1)
    h2 = np.tanh(w3 * x1 + w4 * x2 + b2)
    y = sigmoid(w5 * h1 + w6 * h2 + b3)
    loss = 0.5 * (y - t) ** 2
    d_o = (y - t) * y * (1 - y)  # dL/dz_o
    d_1 = d_o * w5 * (1 - h1**2)  # dL/dz_1
    d_2 = d_o * w6 * (1 - h2**2)  # dL/dz_2
    grad_w = np.stack([d_1 * x1, d_1 * x2, d_2 * x1, d_2 * x2, d_o * h1, d_o * h2], axis=1)
    grad_b = np.stack([d_1, d_2, d_o], axis=1)
    return loss, y, grad_w, grad_b


def autograd_reference(x, t, w, b):
    # Same network written in matrix form in torch; gradients from autograd (one network).
    w = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    W1 = torch.stack([w[0:2], w[2:4]])  # rows: hidden units, cols: inputs
    h = torch.tanh(W1 @ torch.tensor(x, dtype=torch.float64) + b[:2])
    y = torch.sigmoid(w[4:6] @ h + b[2])
    loss = 0.5 * (y - float(t)) ** 2
    loss.backward()
    return loss.item(), w.grad.numpy(), b.grad.numpy()


rng = np.random.default_rng(0)
n = 1000
X = rng.normal(size=(n, 2)) * 2
T = rng.uniform(size=n)
W = rng.normal(size=(n, 6)) * 1.5
B = rng.normal(size=(n, 3))

loss, y, gw, gb = forward_backward(X, T, W, B)
ref = [autograd_reference(X[i], T[i], W[i], B[i]) for i in range(n)]
ref_loss = np.array([r[0] for r in ref])
ref_gw = np.stack([r[1] for r in ref])
ref_gb = np.stack([r[2] for r in ref])

err = max(np.abs(loss - ref_loss).max(), np.abs(gw - ref_gw).max(), np.abs(gb - ref_gb).max())
print(f"{n} random settings: max |hand - autograd| over loss, dL/dw1..w6, dL/db1..b3 = {err:.2e}")
print(f"(gradient magnitudes range up to {np.abs(ref_gw).max():.2f})")
assert err < 1e-6

# %% [markdown]
# **One gradient-descent step, numerically** ($\eta = 0.5$, one sample $x = (1, -0.5)$, $t = 1$):

# %%
x = np.array([[1.0, -0.5]])
t = np.array([1.0])
w = np.array([[0.1, -0.2, 0.4, 0.3, 0.5, -0.6]])
b = np.array([[0.0, 0.1, -0.1]])
eta = 0.5

loss0, y0, gw, gb = forward_backward(x, t, w, b)
w_new, b_new = w - eta * gw, b - eta * gb
loss1, y1, _, _ = forward_backward(x, t, w_new, b_new)

h1, h2 = (
    np.tanh(w[0, 0] * x[0, 0] + w[0, 1] * x[0, 1] + b[0, 0]),
    np.tanh(w[0, 2] * x[0, 0] + w[0, 3] * x[0, 1] + b[0, 1]),
)
d_o = (y0[0] - t[0]) * y0[0] * (1 - y0[0])
print(f"forward: h1 = {h1:.6f}, h2 = {h2:.6f}, y = {y0[0]:.6f}, L = {loss0[0]:.6f}")
print(
    f"delta_out = {d_o:.6f}, delta_h1 = {d_o * w[0, 4] * (1 - h1**2):.6f}, delta_h2 = {d_o * w[0, 5] * (1 - h2**2):.6f}\n"
)
print(f"{'param':>5} {'old':>10} {'dL/dparam':>12} {'new':>10}")
names = [f"w{i}" for i in range(1, 7)] + ["b1", "b2", "b3"]
for name, old, g, new in zip(names, np.r_[w[0], b[0]], np.r_[gw[0], gb[0]], np.r_[w_new[0], b_new[0]]):
    print(f"{name:>5} {old:10.6f} {g:12.6f} {new:10.6f}")
print(f"\nloss before {loss0[0]:.6f} -> after one step {loss1[0]:.6f}")
assert loss1[0] < loss0[0]


# %% [markdown]
# ## 2. Weight initialisation: zeros, ones, random
#
# * **Symmetry.** If all weights into a hidden layer are equal (all zeros, or all ones), every hidden
#   unit computes the same function of the input, receives the same $\delta$ (the same outgoing
#   weight times the same derivative) and therefore the same gradient. After the update they are still
#   identical — by induction, forever (plain SGD, momentum, Adam alike: the updates are a function of
#   identical gradients; only per-unit randomness such as dropout could break it). A layer of $k$ units then behaves like a layer of **one** unit. Random
#   initialisation breaks the symmetry.
# * **Zeros** is worse than just symmetric. With all weights 0, every hidden pre-activation is 0.
#   For tanh, $h = \tanh 0 = 0$, so the gradient of the outgoing weights ($\delta \cdot h$) is 0, and the
#   gradient reaching the hidden layer ($\delta_o \cdot w$) is 0 because the outgoing weights are 0.
#   For ReLU the derivative at 0 is 0 too (PyTorch convention). So every layer except the output bias
#   receives **zero gradient** and the network can only learn a constant. (With sigmoid, $h = 0.5$, the
#   weights do move — but symmetrically.)
# * **Ones** (or any large constant) is symmetric *and* badly scaled: each pre-activation is a sum of
#   all $n_\text{in}$ inputs, $z \sim n_\text{in}\cdot$(input size). Tanh/sigmoid units saturate (derivative ≈ 0,
#   vanishing gradients); with ReLU / linear units activations grow by a factor $\approx n_\text{in}$ per
#   layer and explode in deep nets.
# * **Random**, scaled to the fan-in (Glorot/Xavier for tanh/sigmoid: $\mathrm{Var}\,w = 2/(n_\text{in}+n_\text{out})$;
#   He/Kaiming for ReLU: $\mathrm{Var}\,w = 2/n_\text{in}$) breaks symmetry and keeps the activation and
#   gradient variance roughly constant from layer to layer.
#
# **Check 1 — symmetry.** A 2 → 8 → 1 MLP trained with SGD (momentum 0.9) for 500 full-batch steps on
# an XOR-like problem (label = sign of $x_1 x_2$), with tanh, ReLU or sigmoid hidden units.
# We count the distinct hidden units, i.e. distinct rows of $[W_1 \mid b_1]$ (up to a tolerance of $10^{-9}$).


# %%
def count_distinct_rows(M, tol=1e-9):
    reps = []
    for row in M:
        if not any((row - r).abs().max() <= tol * max(1.0, r.abs().max()) for r in reps):
            reps.append(row)
    return len(reps)


def train_tiny_mlp(init, act, hidden=8, steps=500, lr=0.5, seed=0):
    torch.manual_seed(seed)
    X = torch.randn(256, 2, dtype=torch.float64)
    y = (X[:, 0] * X[:, 1] > 0).double()[:, None]  # XOR-like labels
    net = nn.Sequential(nn.Linear(2, hidden), act(), nn.Linear(hidden, 1)).double()
    for p in net.parameters():
        if init == "zeros":
            nn.init.zeros_(p)
        elif init == "ones":
            nn.init.ones_(p)
        # "random": keep PyTorch's default (Kaiming-uniform) initialisation
    W1_start = net[0].weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(net(X), y)
        loss.backward()
        opt.step()
    acc = ((net(X) > 0).double() == y).double().mean().item()
    rows = torch.cat([net[0].weight, net[0].bias[:, None]], dim=1).detach()
    moved = (net[0].weight.detach() - W1_start).abs().max().item()
    return count_distinct_rows(rows), moved, loss.item(), acc


print(f"{'act':>8} {'init':>6} {'distinct hidden units':>22} {'max|W1 change|':>15} {'loss':>7} {'train acc':>9}")
results = {}
for act in (nn.Tanh, nn.ReLU, nn.Sigmoid):
    for init in ("zeros", "ones", "random"):
        r = results[act.__name__, init] = train_tiny_mlp(init, act)
        print(f"{act.__name__:>8} {init:>6} {r[0]:>15} of 8 {r[1]:>15.3g} {r[2]:>7.3f} {r[3]:>9.2f}")

for act in ("Tanh", "ReLU", "Sigmoid"):
    assert results[act, "zeros"][0] == 1 and results[act, "ones"][0] == 1, "symmetric init must stay symmetric"
    assert results[act, "random"][0] == 8, "random init breaks the symmetry"
for act in ("Tanh", "ReLU"):
    assert results[act, "zeros"][1] == 0.0, "zeros + tanh/relu: first layer receives exactly zero gradient"
assert results["Sigmoid", "zeros"][1] > 0  # sigmoid: moves, but symmetrically
# one effective hidden unit cannot solve XOR; eight distinct ones can
assert all(
    results[a, "random"][3] > 0.9 and max(results[a, "zeros"][3], results[a, "ones"][3]) < 0.7
    for a in ("Tanh", "ReLU", "Sigmoid")
)

# %% [markdown]
# **Check 2 — scale of "ones" in a deep net.** 10 layers of width 64 with all parameters 1, standard
# normal input: ReLU activations grow ≈ 64× per layer (explode); tanh units are saturated from layer 1
# on, so $\tanh' = 1 - h^2 \approx 0$ and the gradient vanishes.

# %%
torch.manual_seed(0)
x = torch.randn(512, 64)
for act in (nn.ReLU, nn.Tanh):
    layers = []
    for _ in range(10):
        lin = nn.Linear(64, 64)
        nn.init.ones_(lin.weight)
        nn.init.ones_(lin.bias)
        layers += [lin, act()]
    h, stats = x, []
    for layer in layers:
        h = layer(h)
        if isinstance(layer, act):
            stats.append(h.abs().mean().item())
    print(f"{act.__name__:>5}: mean |activation| per layer:", " ".join(f"{s:.2g}" for s in stats))
    if act is nn.ReLU:
        relu_stats = stats
    else:
        tanh_last = h
        saturated = (h.abs() > 1 - 1e-6).float().mean().item()
        print(
            f"       fraction of tanh units with |h| > 1 - 1e-6 in the last layer: {saturated:.3f}"
            f"  -> derivative 1 - h^2 < 2e-6"
        )

assert relu_stats[-1] > 1e15 and all(b > 30 * a for a, b in zip(relu_stats[1:], relu_stats[2:]))
assert saturated > 0.99

# %% [markdown]
# ### The experiment through the framework
#
# The same zeros / ones / random comparison, run through `visionlab`'s `init` option with training and
# validation error curves, follows.

# %% [markdown]
# The sweep is the report notebook's `ablation/init` section (`notebooks/report.ipynb`, section 9),
# into the same folder, so whichever notebook runs first, the other re-uses it: the scratch CNN
# (three conv blocks, ReLU, **no batch norm**, Adam) on 4,000 demo images for 10 epochs, four seeds,
# with every conv and linear layer initialised to zeros, ones, $\mathcal N(0, 0.01^2)$, Xavier,
# Kaiming, or left at PyTorch's default.
#
# ```bash
# python train.py -m experiment=ablation/init hydra.sweep.dir=outputs/report/init seed=0,1,2,3
# ```

# %%
from visionlab.report.notebook import AblationSweeps

# The report notebook's sweep helpers, so that both run and re-use the sweep in the same way. Settings
# from the environment: notebooks/run.py's flags set VISIONLAB_SMOKE, VISIONLAB_RERUN and
# VISIONLAB_REPORT_DIR for the kernel.
sweeps = AblationSweeps.from_env()
run_sweep, show_figures, show_table, facts, show_seeds = (
    sweeps.run_sweep,
    sweeps.show_figures,
    sweeps.show_table,
    sweeps.facts,
    sweeps.show_seeds,
)

# %%
summary = run_sweep("init")

# %%
paths = show_figures("init")

# %%
show_table("init")
facts("init")

# %%
show_seeds("init")


# %% [markdown]
# **What the curves show** (the real sweep: four seeds, 10 epochs), against the explanation above:
#
# * **zeros** — train and validation error flat at 0.90 in every epoch and every seed, and the
#   training loss stays at $\ln 10 = 2.3026$: the zero-gradient case. With every weight 0, ReLU's
#   derivative at 0 is 0 and the outgoing weights are 0, so no weight ever receives a gradient; only
#   the output biases move, and with balanced classes they have nothing to learn. The network outputs
#   a constant, as in Check 1 (first-layer change exactly 0).
# * **ones** — also flat at 0.90: symmetric *and* badly scaled. Every channel of a layer computes the
#   same function and receives the same update, so the network keeps one effective channel per layer;
#   and since this CNN uses ReLU, the "ones" failure is the explosion of Check 2, not tanh's
#   saturation: each layer multiplies the activations by roughly its fan-in (27, 288, 576), the logits
#   are huge and so is the training loss (against 2.3 for a constant guess; each run's `result.json`
#   holds its losses). It never becomes NaN, so the runs count as completed; they predict one class
#   throughout.
# * **random** schemes all break the symmetry and learn. Their mean best validation errors follow how
#   close their scale is to He's $\mathrm{Var}\,w = 2/n_\text{in}$: Kaiming 0.1766 ± 0.0078, Xavier
#   0.1883 ± 0.0131, PyTorch's default ($1/(3 n_\text{in})$, 6× too small) 0.1967 ± 0.0118,
#   $\mathcal N(0, 0.01^2)$ (35–740× too small) 0.2541 ± 0.0010. Only the smallest is clearly behind:
#   its range over the four seeds, [0.2533–0.2554], lies above the others' (7.0 to 8.7 points behind
#   Kaiming in each seed), and its curve starts highest: the signal and the gradients shrink layer by
#   layer, as in section 3. Kaiming, Xavier and the default show **no clear difference**: their seed
#   ranges overlap (Xavier is ahead of Kaiming in seed 0; Kaiming is ahead of the default in every
#   seed, by 1.0 to 3.6 points, yet [0.1685–0.1848] and [0.1815–0.2076] overlap). All four are still
#   improving near epoch 10, so this is a ranking of training speed.
#
# With batch norm (report notebook, section 1) the default initialisation reaches 0.1592 ± 0.0136:
# normalising each layer's pre-activations removes most of the dependence on the initial scale (its
# range over the seeds overlaps Kaiming's without BN: no clear difference between the two). It would
# not remove the symmetry of zeros or ones (batch norm of identical channels gives identical
# channels); that combination is not part of the sweep.

# %% [markdown]
# ## 3. Exploding vs vanishing gradients; sigmoid vs ReLU
#
# Backprop multiplies, layer by layer, the transposed weight matrix and the activation derivative:
# $\delta_{l-1} = W_l^\top \delta_l \odot f'(z_{l-1})$. Over $L$ layers the gradient reaching layer 1 is
# a product of $L$ such factors, so it shrinks or grows **geometrically** with depth:
#
# * **Vanishing**: the per-layer factor is < 1. The sigmoid's derivative is at most $0.25$ (at $z=0$) and
#   tiny when saturated, so a deep sigmoid stack with weights of the usual scale ($\sim 1/\sqrt{n_\text{in}}$) loses ≥ 4× per layer:
#   the first layers barely learn. Tanh is better (derivative ≤ 1, zero-centred output) but still
#   saturates.
# * **Exploding**: the per-layer factor is > 1 (weights too large, e.g. $\|W\| \gg 1$, long RNN unrolls):
#   updates become huge, the loss diverges/NaNs. Remedies: proper init, gradient clipping,
#   normalisation layers, residual connections.
# * **ReLU** has derivative exactly 1 on its active half, so it does not shrink the gradient by itself
#   and does not saturate for positive inputs; with He init ($\mathrm{Var}\,w = 2/n_\text{in}$, compensating
#   for the half of the units that are off) the gradient norm stays ~constant across depth. ReLU can still
#   vanish or explode if the *weights* are scaled wrongly — note that PyTorch's default `nn.Linear` init,
#   $U(\pm 1/\sqrt{n_\text{in}})$, i.e. $\mathrm{Var}\,w = 1/(3 n_\text{in})$, is 6× too small for ReLU — and
#   units whose input is always negative are "dead" (zero gradient).
#
# Experiment: 20 `nn.Linear(64, 64)` layers with the activation between them, a batch of 256 random
# inputs, MSE to a random target. Left: $\|\partial L/\partial W_l\|$ per layer. Right: the
# back-propagated signal $\|\partial L/\partial a_l\|$ at the input of layer $l$, relative to its value
# at the output — this isolates the product of Jacobians.


# %%
def deep_stack(act, init="default", depth=20, width=64):
    layers = []
    for i in range(depth):
        lin = nn.Linear(width, width)
        if init == "he":
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)
        elif init == "2x he":
            nn.init.normal_(lin.weight, std=2 * math.sqrt(2 / width))
            nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < depth - 1:
            layers.append(act())
    return nn.Sequential(*layers)


def gradient_profile(net, x, target):
    acts = []  # inputs of each Linear layer
    h = x
    for m in net:
        if isinstance(m, nn.Linear):
            h.retain_grad()  # x requires grad, so every h does
            acts.append(h)
        h = m(h)
    out = h
    out.retain_grad()
    F.mse_loss(out, target).backward()
    w_norms = np.array([m.weight.grad.norm().item() for m in net if isinstance(m, nn.Linear)])
    a_norms = np.array([a.grad.norm().item() for a in acts])
    return w_norms, a_norms / out.grad.norm().item()


configs = [
    ("sigmoid", nn.Sigmoid, "default"),
    ("tanh", nn.Tanh, "default"),
    ("relu", nn.ReLU, "default"),
    ("relu, He init", nn.ReLU, "he"),
    ("relu, 2x He std", nn.ReLU, "2x he"),
]
torch.manual_seed(0)
x = torch.randn(256, 64, requires_grad=True)
target = torch.randn(256, 64)
profiles = {}
for name, act, init in configs:
    torch.manual_seed(1)
    profiles[name] = gradient_profile(deep_stack(act, init), x, target)
    x.grad = None

fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
layers = np.arange(1, 21)
for name, (w_norms, a_norms) in profiles.items():
    axes[0].semilogy(layers, w_norms, "o-", ms=3, label=name)
    axes[1].semilogy(layers, a_norms, "o-", ms=3, label=name)
axes[0].set(title=r"weight gradient $\|\partial L/\partial W_l\|$", xlabel="layer $l$ (1 = input side)")
axes[1].set(
    title=r"backprop signal $\|\partial L/\partial a_l\| \,/\, \|\partial L/\partial \hat y\|$",
    xlabel="layer $l$ (1 = input side)",
)
for ax in axes:
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xticks(layers[::2])
axes[0].legend(fontsize=8)
fig.tight_layout()
plt.show()

print(f"{'':>16} {'|dL/dW_1|':>10} {'|dL/dW_20|':>10} {'ratio':>9}")
for name, (w_norms, _) in profiles.items():
    print(f"{name:>16} {w_norms[0]:10.2e} {w_norms[-1]:10.2e} {w_norms[0] / w_norms[-1]:9.1e}")

sig_w = profiles["sigmoid"][0]
assert sig_w[0] / sig_w[-1] < 1e-6, "sigmoid: first layer's gradient is orders of magnitude smaller"
he_w = profiles["relu, He init"][0]
assert 0.1 < he_w[0] / he_w[-1] < 10, "relu + He init: gradient norm roughly constant over depth"
assert profiles["relu, 2x He std"][1][0] > 1e4, "weights 2x too large: back-propagated gradient explodes"
assert profiles["sigmoid"][1][0] < 1e-10


# %% [markdown]
# ## 4. Output size of a convolution and of max-pooling
#
# **Convolution.** Input $J \times K$, filter $M \times N$, stride $s$ (or $s_h, s_w$), zero padding $P$ on
# each side, dilation $D$ (a dilated filter covers $D(M-1)+1$ input rows):
#
# $$
# J_\text{out} = \left\lfloor \frac{J + 2P - D(M-1) - 1}{s} \right\rfloor + 1
# \;\overset{D=1}{=}\; \left\lfloor \frac{J + 2P - M}{s} \right\rfloor + 1,
# \qquad
# K_\text{out} = \left\lfloor \frac{K + 2P - D(N-1) - 1}{s} \right\rfloor + 1 .
# $$
#
# Reason: the padded input has $J+2P$ rows; the first window starts at row 0, the last possible start
# is $J + 2P - M$, and starts are $s$ apart. "Same" padding for $s = 1$: $P = (M-1)/2$ (odd $M$).
# The number of channels out is the number of filters, independent of the above.
#
# **Max-pooling** with window $F$, stride $s$ (PyTorch default $s = F$), padding $P$ (implicit $-\infty$,
# $P \le F/2$), dilation $D$:
#
# $$
# J_\text{out} = \left\lfloor \frac{J + 2P - D(F-1) - 1}{s} \right\rfloor + 1
# \;\overset{P=0,\,D=1}{=}\; \left\lfloor \frac{J - F}{s} \right\rfloor + 1 .
# $$
#
# With `ceil_mode=True` the floor becomes a ceiling (a last, partial window is kept), except that a
# window must start inside the input or the left padding: if $(J_\text{out} - 1)\,s \ge J + P$, one
# is subtracted. Below, both formulas are checked against `nn.Conv2d` and `nn.MaxPool2d` on random
# settings (non-square kernels, strides, paddings, dilations; pooling with and without `ceil_mode`).


# %%
def conv_out(J, M, s, P, D=1):
    return (J + 2 * P - D * (M - 1) - 1) // s + 1


n_ceil_fix = 0  # how often the ceil_mode correction fires


def pool_out(J, F_, s, P=0, D=1, ceil_mode=False):
    global n_ceil_fix
    num = J + 2 * P - D * (F_ - 1) - 1
    if not ceil_mode:
        return num // s + 1
    out = -(-num // s) + 1  # ceil division
    if (out - 1) * s >= J + P:  # last window must start inside input/left pad
        out -= 1
        n_ceil_fix += 1
    return out


rng = np.random.default_rng(0)
n_conv = n_pool = 0
while n_conv < 1000:
    J, K = rng.integers(1, 40, size=2)
    M, N = rng.integers(1, 8, size=2)
    s = tuple(int(v) for v in rng.integers(1, 5, size=2))
    P = tuple(int(v) for v in rng.integers(0, 4, size=2))
    D = tuple(int(v) for v in rng.integers(1, 4, size=2))
    expected = (conv_out(J, M, s[0], P[0], D[0]), conv_out(K, N, s[1], P[1], D[1]))
    if min(expected) < 1:  # filter larger than padded input: invalid
        continue
    conv = nn.Conv2d(1, 1, (int(M), int(N)), stride=s, padding=P, dilation=D, bias=False)
    got = tuple(conv(torch.zeros(1, 1, int(J), int(K))).shape[-2:])
    assert got == expected, (J, K, M, N, s, P, D, got, expected)
    n_conv += 1

while n_pool < 1000:
    J, K = rng.integers(1, 40, size=2)
    F_ = tuple(int(v) for v in rng.integers(1, 7, size=2))
    s = tuple(int(v) for v in rng.integers(1, 5, size=2))
    P = tuple(int(rng.integers(0, f // 2 + 1)) for f in F_)  # PyTorch requires P <= F/2
    D = tuple(int(v) for v in rng.integers(1, 3, size=2))
    ceil_mode = bool(rng.integers(0, 2))
    expected = (pool_out(J, F_[0], s[0], P[0], D[0], ceil_mode), pool_out(K, F_[1], s[1], P[1], D[1], ceil_mode))
    if min(expected) < 1:
        continue
    pool = nn.MaxPool2d(F_, stride=s, padding=P, dilation=D, ceil_mode=ceil_mode)
    got = tuple(pool(torch.zeros(1, 1, int(J), int(K))).shape[-2:])
    assert got == expected, (J, K, F_, s, P, D, ceil_mode, got, expected)
    n_pool += 1

print(f"Conv2d:    formula == PyTorch in {n_conv} / {n_conv} random settings")
print(
    f"MaxPool2d: formula == PyTorch in {n_pool} / {n_pool} random settings "
    f"(about half with ceil_mode=True; the 'start inside' correction was needed {n_ceil_fix} times)"
)
assert n_ceil_fix > 0
# classic examples
assert conv_out(32, 5, 1, 0) == 28 and conv_out(224, 7, 2, 3) == 112 and pool_out(112, 3, 2, 1) == 56
assert pool_out(28, 2, 2) == 14 and pool_out(5, 2, 2) == 2 and pool_out(5, 2, 2, ceil_mode=True) == 3

# %% [markdown]
# ## 5. A fully connected layer is a convolution
#
# A `Linear` layer on a flattened $C \times H \times W$ feature map computes
# $y_o = \sum_{c,i,j} W_{o,(c,i,j)}\, x_{c,i,j} + b_o$. A convolution with $O$ filters of size
# $C \times H \times W$ and no padding, applied to the same $H \times W$ map, has exactly one output
# position and computes the same sum — the weight matrix $O \times CHW$ is simply reshaped to
# $O \times C \times H \times W$. Likewise, a $1 \times 1$ convolution is a `Linear` layer
# $C \to O$ applied independently at every spatial position.
#
# **Why this matters (fully convolutional networks).** After replacing the FC layers by convolutions
# the network has no fixed input size. On a larger input the "FC" convolution slides over the feature
# map and produces a *map* of outputs — the classifier evaluated on every window, as in a sliding-window
# detector, but sharing all the computation of the overlapping windows. OverFeat (sliding-window
# classification/detection) and FCN (semantic segmentation: a class score map, upsampled) are built
# this way. Checked below in float64,
# including the sliding-window equivalence.

# %%
torch.manual_seed(0)
N, C, H, W, O = 4, 16, 7, 7, 10
lin = nn.Linear(C * H * W, O).double()
conv = nn.Conv2d(C, O, kernel_size=(H, W)).double()
with torch.no_grad():
    conv.weight.copy_(lin.weight.view(O, C, H, W))  # same flattening order as x.flatten(1)
    conv.bias.copy_(lin.bias)

x = torch.randn(N, C, H, W, dtype=torch.float64)
err_fc = (lin(x.flatten(1)) - conv(x).flatten(1)).abs().max().item()
print(
    f"Linear(C*H*W -> O) vs Conv2d(kernel H x W): max |diff| = {err_fc:.1e}, conv output shape {tuple(conv(x).shape)}"
)
assert conv(x).shape == (N, O, 1, 1) and err_fc < 1e-6

# Larger input: the conv evaluates the same classifier on every H x W window (stride 1).
big = torch.randn(2, C, H + 5, W + 3, dtype=torch.float64)
dense = conv(big)
windows = torch.stack(
    [
        torch.stack([lin(big[:, :, i : i + H, j : j + W].flatten(1)) for j in range(dense.shape[-1])], -1)
        for i in range(dense.shape[-2])
    ],
    -2,
)
err_slide = (dense - windows).abs().max().item()
print(
    f"on a {H + 5}x{W + 3} input the conv gives a {tuple(dense.shape[-2:])} map of outputs; "
    f"vs Linear on every window: max |diff| = {err_slide:.1e}"
)
assert err_slide < 1e-6

# 1x1 convolution == the same Linear(C -> O) applied at every position.
lin1 = nn.Linear(C, O).double()
conv1 = nn.Conv2d(C, O, kernel_size=1).double()
with torch.no_grad():
    conv1.weight.copy_(lin1.weight[:, :, None, None])
    conv1.bias.copy_(lin1.bias)
per_position = lin1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # channels-last, Linear, back
err_1x1 = (conv1(x) - per_position).abs().max().item()
print(f"1x1 Conv2d vs Linear(C -> O) at every position: max |diff| = {err_1x1:.1e}")
assert err_1x1 < 1e-6


# %% [markdown]
# ## 6. Residual connections and the triplet loss
#
# **Residual connection.** A block outputs $y = x + F(x)$ instead of $y = F(x)$ ($F$ = a few
# conv/BN/ReLU layers; a $1\times1$ projection on the skip path when shapes differ). Why:
#
# * *Gradient flow:* $\partial y / \partial x = I + \partial F / \partial x$, so through $L$ blocks the
#   gradient always has a direct identity path back to the early layers instead of only the product of
#   $L$ Jacobians that vanishes or explodes (section 3).
# * *Easier optimisation:* a block only has to learn the *residual* with respect to the identity;
#   "do nothing" is $F = 0$, easy to reach from small weights. Plain deep nets show the *degradation
#   problem* (a 56-layer plain net has higher **training** error than a 20-layer one — an
#   optimisation, not an overfitting, problem); ResNets train well at 100+ layers (He et al., 2016).
#
# Check: the 20-layer sigmoid stack of section 3, with and without skip connections
# $a_{l+1} = a_l + \sigma(W_l a_l + b_l)$.


# %%
class SigmoidStack(nn.Module):
    def __init__(self, depth=20, width=64, residual=False):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.residual = residual

    def forward(self, h):
        for layer in self.layers:
            h = h + torch.sigmoid(layer(h)) if self.residual else torch.sigmoid(layer(h))
        return h


torch.manual_seed(0)
x, target = torch.randn(256, 64), torch.randn(256, 64)
first_layer_grad = {}
for residual in (False, True):
    torch.manual_seed(1)
    net = SigmoidStack(residual=residual)
    F.mse_loss(net(x), target).backward()
    g = [l.weight.grad.norm().item() for l in net.layers]
    first_layer_grad[residual] = g[0] / g[-1]
    print(f"{'residual' if residual else 'plain':>8}: |dL/dW_1| / |dL/dW_20| = {g[0] / g[-1]:.1e}")
assert first_layer_grad[True] > 1e6 * first_layer_grad[False]

# %% [markdown]
# **Triplet loss** (metric / embedding learning, e.g. FaceNet face verification, person
# re-identification, image retrieval). A network $f$ maps images to embeddings. For an *anchor* $a$, a
# *positive* $p$ (same identity/class) and a *negative* $n$ (different class):
#
# $$
# \mathcal L(a, p, n) = \max\bigl(0,\; d(f(a), f(p)) - d(f(a), f(n)) + \alpha\bigr),
# $$
#
# with $d$ the Euclidean distance (FaceNet uses the squared distance on L2-normalised embeddings) and
# margin $\alpha > 0$. It pulls positives closer than negatives by at least the margin; only relative
# distances matter, so the embedding generalises to classes never seen in training (new faces are
# compared by distance, no retraining of a classifier).
#
# *Hard-negative mining.* Most random triplets already satisfy the margin ⇒ loss 0 ⇒ no gradient, and
# training stalls. So triplets are mined, usually inside the mini-batch: *hard* negatives
# ($d(a,n) < d(a,p)$), *semi-hard* negatives ($d(a,p) < d(a,n) < d(a,p) + \alpha$, FaceNet's choice,
# more stable than the hardest, which are often label noise and can collapse the embedding), or
# "batch-hard" (hardest positive and hardest negative per anchor).
#
# Check: the formula against `nn.TripletMarginLoss` (which uses $\|u - v + \varepsilon\|_2$,
# $\varepsilon = 10^{-6}$), and the effect of batch-hard mining on the fraction of "active" triplets.

# %%
torch.manual_seed(0)
a, p, n_ = (torch.randn(128, 32, dtype=torch.float64) for _ in range(3))
margin, eps = 1.0, 1e-6


def d(u, v):  # PyTorch's pairwise_distance
    return (u - v + eps).norm(dim=1)


manual = torch.clamp(d(a, p) - d(a, n_) + margin, min=0).mean()
reference = nn.TripletMarginLoss(margin=margin, p=2, eps=eps)(a, p, n_)
print(f"triplet loss: manual {manual.item():.10f}  nn.TripletMarginLoss {reference.item():.10f}")
assert abs(manual.item() - reference.item()) < 1e-10

# Batch-hard mining on a toy embedding in which most classes are already well separated.
labels = torch.arange(8).repeat_interleave(16)  # 8 classes x 16 samples
centers = torch.randn(8, 32, dtype=torch.float64) * 0.45
emb = centers[labels] + torch.randn(128, 32, dtype=torch.float64) * 0.3
D = torch.cdist(emb, emb)
same = labels[:, None] == labels[None, :]
eye = torch.eye(128, dtype=torch.bool)
# all valid (a, p, n) triplets
all_losses = (D[:, :, None] - D[:, None, :] + margin).clamp(min=0)[(same & ~eye)[:, :, None] & ~same[:, None, :]]
# batch-hard: hardest positive (farthest) and hardest negative (closest) per anchor
hard_pos = D.masked_fill(~same | eye, -np.inf).max(1).values
hard_neg = D.masked_fill(same, np.inf).min(1).values
hard_losses = (hard_pos - hard_neg + margin).clamp(min=0)
print(
    f"all {all_losses.numel()} triplets: {100 * (all_losses > 0).double().mean():.1f}% have non-zero loss, "
    f"mean loss {all_losses.mean():.3f}"
)
print(
    f"batch-hard (one per anchor): {100 * (hard_losses > 0).double().mean():.1f}% non-zero, mean loss {hard_losses.mean():.3f}"
)
assert (hard_losses > 0).double().mean() > 5 * (all_losses > 0).double().mean()

# %%
print(f"notebook executed in {time.perf_counter() - T_START:.1f} s")
