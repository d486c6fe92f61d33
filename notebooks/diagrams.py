"""The notebooks' diagrams, drawn with matplotlib: the peephole LSTM cell, its backward graph, and the
encoder/decoder with attention.

The cell is drawn from one graph, `cell_graph(peephole)`: nodes (the inputs, the gates, the products, sums
and tanh of the equations) and edges, each edge with the weight or factor it carries forward and the local
derivative it carries backward. `evaluate_cell(graph, params, x, h_prev, c_prev)` computes h_t, c_t by
walking that graph, so the tests can check the drawing against `LSTMCell.forward` (every connection of the
documented equations is drawn, and nothing else):

    i_t  = σ(W_xi x_t + W_hi h_{t-1} + W_ci c_{t-1} + b_i)
    f_t  = σ(W_xf x_t + W_hf h_{t-1} + W_cf c_{t-1} + b_f)
    c~_t = tanh(W_xc x_t + W_hc h_{t-1} + W_cc c_{t-1} + b_c)
    c_t  = f_t ⊙ c_{t-1} + i_t ⊙ c~_t
    o_t  = σ(W_xo x_t + W_ho h_{t-1} + W_co c_t + b_o)        # o_t reads the NEW cell c_t
    h_t  = o_t ⊙ tanh(c_t)

`draw_cell(ax, peephole)` draws the forward graph; `draw_cell(ax, peephole, backward=True)` the same graph
with every arrow reversed, each labelled with the factor the gradient picks up along it.
`draw_seq2seq(ax, source, output, alpha, step)` draws an encoder/decoder with Luong attention at one
decoder step, the attention weights of that step as the widths of its arrows.
"""
from dataclasses import dataclass, field

import numpy as np
import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch

GATES = {"i": "i", "f": "f", "g": "c", "o": "o"}     # gate node -> letter of its weights (g is c~: W_xc, b_c)
COLORS = {"x": "0.45", "h": "C0", "c": "C3", "flow": "k"}


@dataclass
class Node:
    name: str
    xy: tuple           # position on a 12 x 8 canvas
    label: str          # what the forward diagram writes in it
    op: str             # "input", "sigmoid", "tanh" (a gate: of its weighted inputs + bias), "mul", "add", "tanh1"
    text: str = ""      # the value's name, written beside the node ...
    text_offset: tuple = (0.0, 0.0)   # ... this far from its centre


@dataclass
class Edge:
    src: str
    dst: str
    weight: str = None  # the weight it multiplies by, e.g. "W_xi" (None: the value passes as it is)
    back: str = ""      # the factor the gradient picks up going back along it (mathtext)
    kind: str = "flow"  # "x", "h", "c" (peephole) or "flow": the colour
    via: list = field(default_factory=list)   # corner points of the drawn route
    start: tuple = None     # where the drawn arrow leaves (default: the source node)
    label_at: tuple = None  # where its label is written (default: the middle of the arrow's segment)
    elementwise: bool = False   # "diagonal" peepholes: the weight is a vector, applied elementwise


# positions of the gates and the inputs' buses (the canvas is 12 wide, 8 high)
GATE_X = {"f": 3.6, "i": 5.6, "g": 7.6, "o": 9.5}
GATE_Y, CELL_Y, X_BUS, H_BUS, PEEP_BUS = 3.8, 7.0, 0.8, 1.7, 5.05
W_CO_X = GATE_X["o"] - 0.08
PEEP_TAP = 2.3


def cell_graph(peephole="full"):
    """Nodes and edges of one step of the cell with peephole "full", "diagonal" or "none"."""
    if peephole not in ("full", "diagonal", "none"):
        raise ValueError(f"peephole must be 'full', 'diagonal' or 'none', got {peephole!r}")
    nodes = [
        Node("x", (1.0, X_BUS), r"$x_t$", "input"),
        Node("h_prev", (1.0, H_BUS), r"$h_{t-1}$", "input"),
        Node("c_prev", (1.0, CELL_Y), r"$c_{t-1}$", "input"),
        Node("f", (GATE_X["f"], GATE_Y), r"$\sigma$", "sigmoid", r"$f_t$", (-0.55, 0.0)),
        Node("i", (GATE_X["i"], GATE_Y), r"$\sigma$", "sigmoid", r"$i_t$", (-0.55, 0.0)),
        Node("g", (GATE_X["g"], GATE_Y), "tanh", "tanh", r"$\tilde c_t$", (-0.72, 0.0)),
        Node("o", (GATE_X["o"], GATE_Y), r"$\sigma$", "sigmoid", r"$o_t$", (-0.55, 0.0)),
        Node("fc", (GATE_X["f"], CELL_Y), r"$\odot$", "mul"),
        Node("ig", (6.6, 5.85), r"$\odot$", "mul"),
        Node("c", (6.6, CELL_Y), "+", "add"),
        Node("tc", (10.7, 5.6), "tanh", "tanh1"),
        Node("h", (10.7, GATE_Y), r"$\odot$", "mul"),
    ]
    edges = []
    for gate, letter in GATES.items():
        gx = GATE_X[gate]
        edges.append(Edge("x", gate, f"W_x{letter}", rf"$W_{{x{letter}}}^\top$", "x", [(gx - 0.22, X_BUS)],
                          start=(1.05, X_BUS), label_at=(gx - 0.52, 2.3)))
        edges.append(Edge("h_prev", gate, f"W_h{letter}", rf"$W_{{h{letter}}}^\top$", "h", [(gx + 0.22, H_BUS)],
                          start=(1.05, H_BUS), label_at=(gx + 0.52, 2.95)))
    if peephole != "none":
        diag = peephole == "diagonal"
        fed = ("f", "i") if diag else ("f", "i", "g")           # "diagonal" has no peephole on the candidate
        for gate in fed:
            letter, gx = GATES[gate], GATE_X[gate]
            name = f"W_c{letter}"
            edges.append(Edge("c_prev", gate, name, _peep_back(name, diag), "c",
                              [(PEEP_TAP, PEEP_BUS), (gx + 0.35, PEEP_BUS)], start=(PEEP_TAP, CELL_Y),
                              label_at=(gx + 0.35, 4.6), elementwise=diag))
        edges.append(Edge("c", "o", "W_co", _peep_back("W_co", diag), "c", [(W_CO_X, 4.6)],
                          start=(W_CO_X, CELL_Y), label_at=(W_CO_X, 6.1), elementwise=diag))
    edges += [
        Edge("c_prev", "fc", back=r"$\odot f_t$", start=(PEEP_TAP, CELL_Y)),
        Edge("f", "fc", back=r"$\odot c_{t-1}$"),
        Edge("i", "ig", back=r"$\odot \tilde c_t$"),
        Edge("g", "ig", back=r"$\odot i_t$"),
        Edge("fc", "c", back="$1$"),
        Edge("ig", "c", back="$1$"),
        Edge("c", "tc", back=r"$\odot(1-\tanh^2 c_t)$", via=[(10.7, CELL_Y)], label_at=(10.7, 6.45)),
        Edge("tc", "h", back=r"$\odot o_t$"),
        Edge("o", "h", back=r"$\odot \tanh c_t$", label_at=(10.1, 3.3)),
    ]
    return {n.name: n for n in nodes}, edges


def _peep_back(name, diagonal):
    return rf"$\odot w_{{{name[2:]}}}$" if diagonal else rf"$W_{{{name[2:]}}}^\top$"


def evaluate_cell(graph, params, x, h_prev, c_prev):
    """h_t, c_t computed by walking `graph` with `params` (LSTMCell.equation_params() names), for x (B, D),
    h_prev, c_prev (B, H): every gate is its activation of Σ (weight · source) + bias over its in-edges."""
    nodes, edges = graph
    values = {"x": x, "h_prev": h_prev, "c_prev": c_prev}
    pending = [n for n in nodes if n not in values]
    while pending:
        for name in pending:
            ins = [e for e in edges if e.dst == name]
            if all(e.src in values for e in ins):
                break
        else:
            raise ValueError(f"the graph has a cycle through {pending}")
        pending.remove(name)
        op = nodes[name].op
        if op in ("sigmoid", "tanh"):
            a = params[f"b_{GATES[name]}"] + sum(
                values[e.src] * params[e.weight] if e.elementwise else values[e.src] @ params[e.weight].T
                for e in ins)
            values[name] = 1 / (1 + np.exp(-a)) if op == "sigmoid" else np.tanh(a)
        elif op == "mul":
            values[name] = values[ins[0].src] * values[ins[1].src]
        elif op == "add":
            values[name] = values[ins[0].src] + values[ins[1].src]
        elif op == "tanh1":
            values[name] = np.tanh(values[ins[0].src])
    return values["h"], values["c"]


def _box(ax, xy, text, color="k", w=0.62, h=0.5, fontsize=11):
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc="white", ec=color, lw=1.3, zorder=3))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, color=color, zorder=4)


def _node_size(node):
    if node.op == "input":
        return 0.62, 0.48
    if node.op in ("mul", "add"):
        return 0.4, 0.4
    return (0.78 if "tanh" in node.label else 0.5), 0.5


def _end_point(node, towards):
    """Where an arrow from `towards` meets the border of `node`'s box."""
    (x, y), (w, h) = node.xy, _node_size(node)
    dx, dy = towards[0] - x, towards[1] - y
    if dx == 0 and dy == 0:
        return x, y
    scale = min(w / 2 / abs(dx) if dx else np.inf, h / 2 / abs(dy) if dy else np.inf) * 1.08
    return x + dx * scale, y + dy * scale


def _route(nodes, e):
    """The polyline of edge `e`, source to destination."""
    src, dst = nodes[e.src], nodes[e.dst]
    points = [e.start or src.xy] + list(e.via)
    if e.kind == "c":                                                                 # peepholes: into the top
        end = (points[-1][0], dst.xy[1] + _node_size(dst)[1] / 2 + 0.04)
    elif e.kind in ("x", "h"):                                                        # inputs: into the bottom
        end = (points[-1][0], dst.xy[1] - _node_size(dst)[1] / 2 - 0.04)
    else:
        end = _end_point(dst, points[-1])
    if e.start is None:
        points[0] = _end_point(src, points[1] if len(points) > 1 else end)
    return points + [end]


def draw_cell(ax, peephole="full", backward=False, fontsize=9):
    """The cell of `cell_graph(peephole)` on `ax`: forward (values flow from x_t, h_{t-1}, c_{t-1} to h_t, c_t,
    each weighted edge named by its weight), or backward (every arrow reversed, labelled with the factor
    the gradient picks up along it; ∂L/∂h_t and the carried gradient g_{c,t} come in from the right)."""
    nodes, edges = cell_graph(peephole)
    ax.set_xlim(-1.4, 12.4)
    ax.set_ylim(0.3, 7.7)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((1.8, 2.55), 9.6, 4.85, boxstyle="round,pad=0.05,rounding_size=0.3",
                                fc="0.97", ec="0.75", lw=1, zorder=0))
    for e in edges:
        pts = _route(nodes, e)
        # the arrowhead goes on the segment at the gate's end of a weighted edge (where it says which gate),
        # on the last segment of the others
        head = len(pts) - 2
        if backward:
            pts = pts[::-1]
            head = 0 if e.weight else head
        color, style = COLORS[e.kind], (":" if e.elementwise else "-")
        lw = 2.0 if e.weight == "W_co" else 1.2
        for k, (p, q) in enumerate(zip(pts[:-1], pts[1:])):
            if k == head:
                ax.annotate("", xy=q, xytext=p, zorder=2,
                            arrowprops=dict(arrowstyle="-|>", color=color, lw=lw, ls=style, shrinkA=0, shrinkB=0,
                                            mutation_scale=10))
            else:
                ax.plot([p[0], q[0]], [p[1], q[1]], style, color=color, lw=lw, zorder=1)
        label = e.back if backward else (_weight_label(e) if e.weight else "")
        if label:
            where = e.label_at or _middle(pts[head], pts[head + 1])
            ax.text(*where, label, fontsize=fontsize, color=color, ha="center", va="center", zorder=5,
                    bbox=dict(fc="white", ec="none", pad=0.5, alpha=0.9))
    for n in nodes.values():
        w, h = _node_size(n)
        if n.op == "input":
            text = rf"$\partial L/\partial {n.label[1:-1]}$" if backward else n.label
            ax.text(1.0, n.xy[1], text, ha="right", va="center", fontsize=fontsize + 2)
            continue
        label = n.label
        if backward and n.op in ("sigmoid", "tanh"):
            label = r"$\sigma'$" if n.op == "sigmoid" else r"tanh$'$"
        _box(ax, n.xy, label, w=w, h=h, fontsize=fontsize + (2 if n.op in ("mul", "add") else 1))
        if n.text:
            ax.text(n.xy[0] + n.text_offset[0], n.xy[1] + n.text_offset[1], n.text, ha="center", va="center",
                    fontsize=fontsize + 1, zorder=5)
    # what leaves the cell, h_t and c_t (forward), or what comes back into them (backward)
    for start, stop, name, grad in [((10.7, CELL_Y), (12.2, CELL_Y), r"$c_t$", r"$g_{c,t}$"),
                                    ((10.9, GATE_Y), (12.2, GATE_Y), r"$h_t$", r"$\partial L/\partial h_t$")]:
        a, b = (stop, start) if backward else (start, stop)
        ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="-|>", color="k", lw=1.3, mutation_scale=10,
                                                        shrinkA=0, shrinkB=0))
        ax.text(stop[0], stop[1] + 0.28, grad if backward else name, ha="right", fontsize=fontsize + 1)
    ax.plot([1.05, PEEP_TAP], [CELL_Y, CELL_Y], color="k", lw=1.2, zorder=1)      # c_{t-1} up to the peephole tap
    if peephole != "none":
        note = "same step" if backward else "the new $c_t$"
        ax.text(W_CO_X, 5.6, note, color=COLORS["c"], fontsize=fontsize - 1, ha="center", va="center",
                bbox=dict(fc="white", ec="none", pad=0.3, alpha=0.9), zorder=5)


def _weight_label(e):
    letters = e.weight[2:]                          # "W_xi" -> "xi"
    if e.elementwise:
        return rf"$w_{{{letters}}}\odot$"
    return rf"$W_{{{letters}}}$"


def _middle(p, q):
    return (p[0] + q[0]) / 2, (p[1] + q[1]) / 2


def cell_figure(peephole="full", backward=False, title=None, width=9.0):
    """A figure holding one cell diagram."""
    fig, ax = plt.subplots(figsize=(width, width * 0.62))
    draw_cell(ax, peephole, backward)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def draw_seq2seq(ax, source, output, alpha, step):
    """An encoder/decoder with Luong attention, at decoder step `step`.

    source: the source tokens (the encoder reads them and then <eos>); output: the output tokens;
    alpha: the attention weights of the decoder steps, one row per output token then <eos>, one column per
    source token then <eos> (what `Seq2Seq.translate(..., return_attention=True)` returns for a sentence);
    step: the decoder step whose attention is drawn (its arrows' widths are its weights).
    """
    src = list(source) + ["<eos>"]
    dec_in = ["<bos>"] + list(output)
    dec_out = list(output) + ["<eos>"]
    S, T = len(src), len(dec_in)
    alpha = np.asarray(alpha)[:, :S]
    if alpha.shape != (T, S):
        raise ValueError(f"alpha must have one row per output token and <eos> and one column per source token "
                         f"and <eos>: expected {(T, S)}, got {alpha.shape}")
    ax.axis("off")
    dx = 1.05
    ex = [0.6 + s * dx for s in range(S)]                          # encoder columns
    gap = 1.0
    dxs = [ex[-1] + gap + dx + t * dx for t in range(T)]           # decoder columns
    y_tok, y_emb, y_lstm, y_att, y_top, y_out = 0.0, 0.9, 1.9, 3.35, 4.4, 5.35
    ax.set_xlim(-0.2, dxs[-1] + 0.9)
    ax.set_ylim(-0.5, 6.2)
    for x, tok in zip(ex, src):
        ax.text(x, y_tok, tok, ha="center", va="center", fontsize=9, family="monospace")
        _arrow(ax, (x, y_tok + 0.22), (x, y_emb - 0.22), "0.4")
        _box(ax, (x, y_emb), "emb", color="0.35", w=0.7, h=0.4, fontsize=8)
        _arrow(ax, (x, y_emb + 0.2), (x, y_lstm - 0.27), "0.4")
        _box(ax, (x, y_lstm), "LSTM", color="C0", w=0.8, h=0.5, fontsize=8)
    for a, b in zip(ex[:-1], ex[1:]):
        _arrow(ax, (a + 0.4, y_lstm), (b - 0.4, y_lstm), "C0")
    for x, tok_in, tok_out in zip(dxs, dec_in, dec_out):
        ax.text(x, y_tok, tok_in, ha="center", va="center", fontsize=9, family="monospace")
        _arrow(ax, (x, y_tok + 0.22), (x, y_emb - 0.22), "0.4")
        _box(ax, (x, y_emb), "emb", color="0.35", w=0.7, h=0.4, fontsize=8)
        _arrow(ax, (x, y_emb + 0.2), (x, y_lstm - 0.27), "0.4")
        _box(ax, (x, y_lstm), "LSTM", color="C2", w=0.8, h=0.5, fontsize=8)
        ax.text(x, y_out + 0.55, tok_out, ha="center", va="center", fontsize=9, family="monospace")
        if x != dxs[step]:                                         # every step attends likewise (not drawn)
            _arrow(ax, (x, y_lstm + 0.27), (x, y_out + 0.35), "0.8")
    for a, b in zip(dxs[:-1], dxs[1:]):
        _arrow(ax, (a + 0.4, y_lstm), (b - 0.4, y_lstm), "C2")
    # the encoder's final state starts the decoder
    _arrow(ax, (ex[-1] + 0.4, y_lstm), (dxs[0] - 0.4, y_lstm), "C0")
    ax.text((ex[-1] + dxs[0]) / 2, y_lstm + 0.3, r"$(h, c)$", ha="center", fontsize=8, color="C0")
    # attention at `step`: the decoder state h_t scores every encoder output k_s
    xq = dxs[step]
    ax.text(ex[0] - 0.45, y_lstm + 0.55, r"$k_s$", fontsize=9, color="C0")
    ax.text(xq + 0.45, y_lstm + 0.4, r"$h_t$", fontsize=9, color="C2")
    _box(ax, (xq, y_att), r"$\mathrm{ctx}_t$", color="C3", w=0.9, h=0.45, fontsize=8)
    for x, a in zip(ex, alpha[step]):
        ax.annotate("", xy=(xq - 0.45, y_att - 0.1), xytext=(x, y_lstm + 0.27),
                    arrowprops=dict(arrowstyle="-", color="C3", lw=0.3 + 5 * a, alpha=0.35 + 0.65 * a,
                                    connectionstyle="arc3,rad=-0.12"))
        ax.text(x, y_lstm + 0.45, f"{a:.2f}", ha="center", fontsize=7, color="C3")
    _arrow(ax, (xq, y_lstm + 0.27), (xq, y_att - 0.24), "C2")
    _box(ax, (xq, y_top), r"$\tilde h_t$", color="k", w=0.7, h=0.45, fontsize=9)
    _arrow(ax, (xq, y_att + 0.24), (xq, y_top - 0.24), "C3")
    _arrow(ax, (xq, y_top + 0.24), (xq, y_out + 0.35), "k")
    ax.text(np.mean(ex), -0.5, "encoder: reads the source", ha="center", fontsize=9, color="C0")
    ax.text(np.mean(dxs), -0.5, "decoder: reads the previous output token", ha="center", fontsize=9, color="C2")
    ax.text(ex[0] - 0.4, y_out + 0.5, "\n".join([
        rf"attention at decoder step $t = {step + 1}$:",
        r"$\alpha_{t,s} = \mathrm{softmax}_s(h_t \cdot k_s)$ (the numbers, and the arrows' widths)",
        r"$\mathrm{ctx}_t = \sum_s \alpha_{t,s}\, k_s$",
        r"$\tilde h_t = \tanh(W_c\,[\mathrm{ctx}_t ; h_t])$ $\to$ linear $\to$ softmax"]),
        fontsize=8.5, va="top", ha="left", linespacing=1.6)


def _arrow(ax, a, b, color, lw=1.0):
    ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="-|>", color=color, lw=lw, mutation_scale=8,
                                                    shrinkA=0, shrinkB=0))
