"""What layer normalization, zoneout and recurrent dropout do to a small character-level LSTM language model.

The text is the names of the 1,683 characters of Unicode 3.2 from U+2000 to U+27FF (punctuation, arrows,
mathematical operators, technical symbols, box drawing, dingbats: "LEFTWARDS ARROW TO BAR", "LESS-THAN OR
EQUIVALENT TO", ...), one per line: 43,524 characters over 37 symbols. Python's ``unicodedata`` module
keeps that database frozen (``unicodedata.ucd_3_2_0``, for IDNA) and Unicode never renames a character, so
the text is the same on every Python and machine, without a download. Every tenth group of 40 consecutive
names is held out for validation: 160 names (arrows, APL symbols, box drawing, dingbats), 5,545 characters.

Each variant -- the plain LSTM, ``layer_norm=True``, ``zoneout=0.1``, ``recurrent_dropout=0.25``, layer
normalization with zoneout -- is the same model (one-hot characters -> LSTM of 128 units -> linear head ->
softmax) trained the same way: the same seed (so the same initial weights where the variants share them),
optimizer (``fusedrnn.optim.Adam``, lr 1e-2, gradients clipped by ``fusedrnn.optim.clip_grad_norm``),
number of steps and sequence of training windows. Training runs ``lstm.record`` (where zoneout's choices
and the dropout masks are drawn) and ``tape.backward``. Every loss reported is measured with a plain call
(inference: no mask, zoneout's expectation), on the validation names or the training names, read in rows
of ``--eval-len`` characters from a zero state. Zoneout's 0.1 and recurrent dropout's 0.25 are mild,
common values, not tuned here. ``--variants gru,gru+layer_norm,gru+zoneout`` runs the same with a GRU.

    python examples/regularize.py             # about 2 to 3 minutes on 2 cores
    python examples/regularize.py --seed 1    # another initialization, order of windows and masks

Measured on 2 shared cores of an Intel Xeon, Python 3.11, with ``python examples/regularize.py --seed 0``
(nats per character; best: the lowest of the validation losses measured every 200 steps, and its step)::

    variant               valid  train   best (step)  seconds
    plain                 1.200  0.410   1.011 (400)     45.7
    layer_norm            1.238  0.251   0.995 (400)     42.3
    zoneout               0.899  0.603  0.899 (1600)     20.2
    recurrent_dropout     0.976  0.581  0.956 (1400)     20.7
    layer_norm+zoneout    0.961  0.447   0.897 (800)     42.1

and the final validation loss with ``--seed 1`` and ``--seed 2`` (training loss in brackets)::

    variant               seed 1         seed 2
    plain                 1.220 (0.446)  1.181 (0.410)
    layer_norm            1.205 (0.251)  1.255 (0.244)
    zoneout               0.970 (0.628)  0.910 (0.626)
    recurrent_dropout     0.958 (0.608)  1.010 (0.600)
    layer_norm+zoneout    0.956 (0.444)  0.988 (0.440)

The seconds depend on what else the cores run (17 to 78 s per variant in these runs). Every loss is the
same in every run with the same seed, at any thread count. What they show, on this budget:

- 1,600 steps of 16 x 64 characters are 43 passes over the training text, and the plain LSTM overfits: its
  validation loss is lowest at step 400 to 600 (1.01 to 1.05) and ends near 1.2 while its training loss
  falls to 0.41 to 0.45.
- Layer normalization speeds training up -- after 200 steps (``--steps 200``) its validation loss is 1.00
  against the plain LSTM's 1.24 (seed 0), and its best is below the plain LSTM's on every seed (0.97 to
  1.00 against 1.01 to 1.05) -- but it overfits sooner and further (training loss about 0.25): at the end
  of the budget it is no better than the plain LSTM (1.21 to 1.26 against 1.18 to 1.22; worse on seeds 0
  and 2, better on seed 1). It is not a regularizer.
- Zoneout is: with the same steps its validation loss ends 0.25 to 0.30 nats/char below the plain LSTM's on
  all three seeds, below the plain LSTM's best too, and on seeds 0 and 2 it was still falling. Recurrent
  dropout helps almost as much (0.17 to 0.26 below). Layer normalization with zoneout ends 0.19 to 0.26
  below the plain LSTM, better than zoneout alone on seed 1 and worse on seeds 0 and 2; its best on the way
  is the lowest of all on seeds 0 and 1.
- With ``--variants gru,gru+layer_norm,gru+zoneout --seed 0`` the GRU behaves the same way: 1.242 plain
  (best 1.044 at step 400), 1.280 with layer normalization (best 1.000 at step 200), 0.929 with zoneout.
"""

from __future__ import annotations

import argparse
import math
import time
import unicodedata

import numpy as np
from progress import Progress  # examples/progress.py

import fusedrnn as fr

# name -> (layer, its options). The masks and zoneout's choices are drawn in record (training) only; a call
# uses zoneout's expectation and drops nothing. The GRU variants run only when asked for (--variants).
VARIANTS = {
    "plain": ("lstm", {}),
    "layer_norm": ("lstm", {"layer_norm": True}),
    "zoneout": ("lstm", {"zoneout": 0.1}),
    "recurrent_dropout": ("lstm", {"recurrent_dropout": 0.25}),
    "layer_norm+zoneout": ("lstm", {"layer_norm": True, "zoneout": 0.1}),
    "gru": ("gru", {}),
    "gru+layer_norm": ("gru", {"layer_norm": True}),
    "gru+zoneout": ("gru", {"zoneout": 0.1}),
}
DEFAULT_VARIANTS = "plain,layer_norm,zoneout,recurrent_dropout,layer_norm+zoneout"


def unicode_names(first: int = 0x2000, last: int = 0x27FF) -> list[str]:
    """The Unicode 3.2 names of the characters from ``first`` to ``last`` that have one, in order."""
    names = (unicodedata.ucd_3_2_0.name(chr(code), "") for code in range(first, last + 1))
    return [name for name in names if name]


def split_names(names: list[str], group: int = 40, every: int = 10) -> tuple[str, str]:
    """(training text, validation text): every ``every``-th group of ``group`` consecutive names is held
    out, so that validation samples the whole range rather than only its last block."""
    train, valid = [], []
    for start in range(0, len(names), group):
        part = valid if (start // group) % every == every - 1 else train
        part.extend(names[start : start + group])
    return "\n".join(train) + "\n", "\n".join(valid) + "\n"


class CharModel:
    """One-hot characters -> LSTM or GRU -> linear head -> logits over the vocabulary."""

    def __init__(self, vocab: int, hidden: int, seed: int, layer: str, options: dict) -> None:
        rng = np.random.default_rng(seed)
        self.vocab = vocab
        self.hidden = hidden
        if layer == "lstm":  # the forget gate starts mostly open, as in char_lm.py
            self.rnn = fr.LSTM(vocab, hidden, forget_bias=1.0, seed=seed, **options)
        else:
            self.rnn = fr.GRU(vocab, hidden, seed=seed, **options)
        bound = 1.0 / np.sqrt(hidden)
        self.head = {
            "W": rng.uniform(-bound, bound, (hidden, vocab)).astype(np.float32),
            "b": np.zeros(vocab, np.float32),
        }

    def one_hot(self, ids: np.ndarray) -> np.ndarray:
        return np.eye(self.vocab, dtype=np.float32)[ids]

    def logits(self, y: np.ndarray) -> np.ndarray:
        return y @ self.head["W"] + self.head["b"]


def softmax_xent(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy (nats) of rows of logits against integer targets, and its gradient."""
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    flat_p = p.reshape(-1, p.shape[-1])
    flat_t = targets.reshape(-1)
    rows = np.arange(flat_t.size)
    loss = float(-np.log(flat_p[rows, flat_t] + 1e-12).mean())
    flat_p[rows, flat_t] -= 1.0
    return loss, p / flat_t.size


def evaluate(model: CharModel, ids: np.ndarray, row_len: int) -> float:
    """Cross-entropy per character of predicting each character from those before it, with a plain call
    (inference) over rows of ``row_len`` + 1 characters, each from a zero state (the text's tail that does
    not fill a row is left out)."""
    rows = (len(ids) - 1) // row_len
    starts = np.arange(rows) * row_len
    window = ids[starts[None, :] + np.arange(row_len + 1)[:, None]]  # (row_len + 1, rows)
    y, _ = model.rnn(model.one_hot(window[:-1]))
    loss, _ = softmax_xent(model.logits(y), window[1:])
    return loss


def train(name: str, args: argparse.Namespace, train_ids, valid_ids, vocab: int) -> dict:
    """Train one variant for ``args.steps`` steps: its final validation and training losses (nats/char),
    the best validation loss measured on the way and at which step, and the seconds training took
    (without the measurements)."""
    layer, options = VARIANTS[name]
    model = CharModel(vocab, args.hidden, args.seed, layer, options)
    opt = fr.optim.Adam(model.rnn, model.head, lr=args.lr)
    windows = np.random.default_rng(args.seed)  # the same windows, in the same order, for every variant
    seconds = 0.0
    best, best_step = math.inf, 0
    bar = Progress(args.steps, name, enabled=not args.quiet)
    for step in range(1, args.steps + 1):
        start = time.perf_counter()
        offsets = windows.integers(0, len(train_ids) - args.seq_len - 1, args.batch)
        window = train_ids[offsets[None, :] + np.arange(args.seq_len + 1)[:, None]]  # (T+1, N)
        tape = model.rnn.record(model.one_hot(window[:-1]))
        loss, dlogits = softmax_xent(model.logits(tape.output), window[1:])
        flat_dlogits = dlogits.reshape(-1, vocab)
        head_grads = {
            "W": tape.output.reshape(-1, args.hidden).T @ flat_dlogits,
            "b": flat_dlogits.sum(axis=0),
        }
        grads = [tape.backward(dlogits @ model.head["W"].T).params, head_grads]
        fr.optim.clip_grad_norm(grads, args.clip)
        opt.step(grads)
        seconds += time.perf_counter() - start
        bar.update(loss=loss)
        if step % args.eval_every == 0 or step == args.steps:
            valid = evaluate(model, valid_ids, args.eval_len)
            if valid < best:
                best, best_step = valid, step
    bar.close()
    return {
        "valid": valid,
        "train": evaluate(model, train_ids, args.eval_len),
        "best_valid": best,
        "best_step": best_step,
        "seconds": seconds,
    }


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--steps", type=positive_int, default=1600, help="training steps per variant (default 1600)")
    add("--hidden", type=positive_int, default=128, help="hidden units (default 128)")
    add("--seq-len", type=positive_int, default=64, help="characters per training window (default 64)")
    add("--batch", type=positive_int, default=16, help="windows per step (default 16)")
    add("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    add("--clip", type=float, default=1.0, help="gradient norm clip (default 1.0)")
    add("--eval-every", type=positive_int, default=200, help="steps between validation losses (default 200)")
    add("--eval-len", type=positive_int, default=200, help="characters per row of a loss (default 200)")
    add(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"comma-separated, of {', '.join(VARIANTS)} (default {DEFAULT_VARIANTS})",
    )
    add("--seed", type=int, default=0)
    add("--quiet", action="store_true", help="no progress bar and no printing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Train every variant asked for and print the table. Returns ``{"uniform": log(vocabulary size),
    "variants": {name: {"valid", "train", "best_valid", "best_step", "seconds"}}}``, losses in nats/char."""
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else print
    names = args.variants.split(",")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise ValueError(f"--variants: expected names from {', '.join(VARIANTS)}, got {', '.join(unknown)}")
    train_text, valid_text = split_names(unicode_names())
    chars = sorted(set(train_text + valid_text))
    index = {c: i for i, c in enumerate(chars)}
    train_ids = np.array([index[c] for c in train_text], np.int64)
    valid_ids = np.array([index[c] for c in valid_text], np.int64)
    if args.eval_len >= len(valid_ids):
        raise ValueError(f"--eval-len: expected fewer than {len(valid_ids)} characters, got {args.eval_len}")
    if args.seq_len >= len(train_ids) - 1:
        limit = len(train_ids) - 1
        raise ValueError(f"--seq-len: expected fewer than {limit} characters, got {args.seq_len}")
    say(
        f"{len(train_text):,} training and {len(valid_text):,} validation characters, {len(chars)} distinct "
        f"(uniform: {math.log(len(chars)):.3f} nats/char); {args.steps} steps of {args.batch} x "
        f"{args.seq_len} characters per variant, seed {args.seed}"
    )
    results = {}
    for name in names:
        results[name] = train(name, args, train_ids, valid_ids, len(chars))
    say(f"\nnats/char, with a call; best: the lowest validation loss, measured every {args.eval_every} steps")
    say(f"{'variant':<20} {'valid':>6} {'train':>6} {'best (step)':>13} {'seconds':>8}")
    for name, r in results.items():
        best = f"{r['best_valid']:.3f} ({r['best_step']})"
        say(f"{name:<20} {r['valid']:6.3f} {r['train']:6.3f} {best:>13} {r['seconds']:8.1f}")
    return {"uniform": math.log(len(chars)), "variants": results}


if __name__ == "__main__":
    main()
