"""Where MultiTaskDistiller's batches come from: one endless stream mixing the tasks' dataloaders."""

import numpy as np


def cycle(iterable):
    """The iterable's items over and over; each pass iterates it anew (a DataLoader reshuffles)."""
    while True:
        empty = True
        for item in iterable:
            empty = False
            yield item
        if empty:
            raise ValueError("cycle: the iterable yielded nothing")


class TaskBatches:
    """(batch, task name) pairs: each task drawn with probability proportional to
    len(its dataloader) ** tau, uniformly when some dataloader has no length.

    The draws use numpy's global generator, as TextBrewer's MultiTaskDistiller does (so a seeded
    run draws the same tasks, and resume states restore it). Iteration never ends; len() is
    `length`, the number of batches the training loop takes per pass.
    """

    def __init__(self, dataloaders, tau=1, length=1):
        if not dataloaders:
            raise ValueError("MultiTaskDistiller: dataloaders must be a non-empty dict {task: dataloader}")
        self.task_names = tuple(dataloaders)
        if all(hasattr(loader, "__len__") for loader in dataloaders.values()):
            sizes = [pow(len(loader), tau) for loader in dataloaders.values()]
            self.probabilities = [size / sum(sizes) for size in sizes]
        else:
            self.probabilities = None
        self.length = length
        self._streams = {name: cycle(loader) for name, loader in dataloaders.items()}

    def __len__(self):
        return self.length

    def __iter__(self):
        while True:
            task = self.task_names[np.random.choice(len(self.task_names), p=self.probabilities)]
            yield next(self._streams[task]), task
