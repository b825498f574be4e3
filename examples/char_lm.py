"""A character-level LSTM language model of the Zen of Python, trained from NumPy with fusedrnn.

The text ships with every Python (``import this``). The model reads one character at a time, as a one-hot
vector, and predicts the next: an LSTM followed by a linear layer and a softmax written in NumPy. Training
takes random windows of the text, runs ``lstm.record`` and ``tape.backward``, adds the head's gradients
and lets ``fusedrnn.optim.Adam`` update both. Then it samples new text one character at a time through
``lstm.stream``, drawing each character from softmax(logits / temperature) and feeding it back in.

    python examples/char_lm.py                     # about 20 s on 2 cores
    python examples/char_lm.py --temperature 0.5   # more conservative samples

Quality bar: training loss below 1.5 nats per character (measured over the whole text at the end).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np
from progress import Progress  # examples/progress.py

import fusedrnn as fr


def zen_of_python() -> str:
    """The Zen of Python, decoded the way the ``this`` module does it (without printing it)."""
    with contextlib.redirect_stdout(io.StringIO()):
        import this
    return "".join(this.d.get(c, c) for c in this.s)


class CharModel:
    """One-hot characters -> LSTM -> linear head -> logits over the vocabulary."""

    def __init__(self, vocab: int, hidden: int, layers: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.vocab = vocab
        self.lstm = fr.LSTM(vocab, hidden, num_layers=layers, forget_bias=1.0, seed=seed)
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


def evaluate(model: CharModel, ids: np.ndarray) -> float:
    """Cross-entropy per character of predicting ids[1:] from ids[:-1], one pass from a zero state."""
    y, _ = model.lstm(model.one_hot(ids[:-1])[:, None, :])
    loss, _ = softmax_xent(model.logits(y), ids[1:, None])
    return loss


def sample(model: CharModel, chars: list[str], prime: str, length: int, temperature: float, seed: int) -> str:
    """Generate text one character at a time through a stream, starting with ``prime``."""
    rng = np.random.default_rng(seed)
    index = {c: i for i, c in enumerate(chars)}
    stream = model.lstm.stream()  # unbatched: x_t (V,), y_t (H,)
    eye = np.eye(model.vocab, dtype=np.float32)
    y = None
    for c in prime:
        y = stream.step(eye[index[c]])
    out = list(prime)
    for _ in range(length):
        z = model.logits(y).astype(np.float64) / temperature
        p = np.exp(z - z.max())
        p /= p.sum()
        i = int(rng.choice(model.vocab, p=p))
        out.append(chars[i])
        y = stream.step(eye[i])
    return "".join(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="training steps (default 400)")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM hidden units (default 128)")
    parser.add_argument("--layers", type=int, default=1, help="LSTM layers (default 1)")
    parser.add_argument("--seq-len", type=int, default=64, help="characters per training window (default 64)")
    parser.add_argument("--batch", type=int, default=16, help="windows per step (default 16)")
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    parser.add_argument("--clip", type=float, default=1.0, help="gradient norm clip (default 1.0)")
    parser.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)")
    parser.add_argument("--sample-length", type=int, default=400, help="characters to sample (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no printing")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    say = (lambda *a: None) if args.quiet else print
    text = zen_of_python()
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], np.int64)
    model = CharModel(len(chars), args.hidden, args.layers, args.seed)
    opt = fr.optim.Adam(model.lstm, model.head, lr=args.lr)
    rng = np.random.default_rng(args.seed)
    say(
        f"{len(text)} characters, {len(chars)} distinct; {model.lstm} with {model.lstm.num_parameters():,} "
        f"parameters"
    )

    start = time.perf_counter()
    bar = Progress(args.steps, "training", enabled=not args.quiet)
    loss = float("nan")
    for _ in range(args.steps):
        offsets = rng.integers(0, len(ids) - args.seq_len - 1, args.batch)
        window = ids[offsets[None, :] + np.arange(args.seq_len + 1)[:, None]]  # (T+1, N)
        tape = model.lstm.record(model.one_hot(window[:-1]))  # y (T, N, H)
        logits = model.logits(tape.output)
        loss, dlogits = softmax_xent(logits, window[1:])
        head_grads = {
            "W": tape.output.reshape(-1, args.hidden).T @ dlogits.reshape(-1, model.vocab),
            "b": dlogits.reshape(-1, model.vocab).sum(axis=0),
        }
        dy = dlogits @ model.head["W"].T
        grads = [tape.backward(dy).params, head_grads]
        fr.optim.clip_grad_norm(grads, args.clip)
        opt.step(grads)
        bar.update(loss=loss)
    bar.close()
    seconds = time.perf_counter() - start

    final = evaluate(model, ids)
    text_out = sample(model, chars, "Beautiful", args.sample_length, args.temperature, args.seed)
    say(
        f"trained {args.steps} steps in {seconds:.1f} s; loss over the whole text: {final:.3f} nats/char "
        f"(bar: < 1.5)"
    )
    say(f"\nsample (temperature {args.temperature}):\n{text_out}")
    return {"loss": final, "last_batch_loss": loss, "seconds": seconds, "sample": text_out}


if __name__ == "__main__":
    main()
