"""The examples' progress bar: tqdm when it is installed, plain lines otherwise."""

from __future__ import annotations


class Progress:
    """A progress bar: tqdm when installed, otherwise a line every tenth of the way."""

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.total, self.desc, self.count = total, desc, 0
        self.bar = None
        self.enabled = enabled
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=desc)
            except ImportError:
                pass

    def update(self, **metrics: float) -> None:
        self.count += 1
        text = " ".join(f"{k}={v:.3f}" for k, v in metrics.items())
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.update(1)
        elif self.enabled and (self.count % max(1, self.total // 10) == 0 or self.count == self.total):
            print(f"{self.desc}: {self.count}/{self.total} {text}", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
