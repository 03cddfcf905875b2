"""How many parameters a model has, module by module: display_parameters and its LayerNode tree."""

import torch


class LayerNode:
    """One module (or parameter) of the tree display_parameters builds.

    value is [number of parameters, megabytes] summed over everything below the node;
    children_name maps each child's name to its node, in the order of the state dict.
    """

    def __init__(self, name, parent=None, value=None, fullname=None):
        self.name = name
        self.fullname = fullname if fullname is not None else name
        self.value = value
        self.children_name = {}
        self.parent = parent

    def __contains__(self, name):
        return name in self.children_name

    def __getitem__(self, name):
        return self.children_name[name]

    def __setitem__(self, name, node):
        self.children_name[name] = node

    def update(self, value):
        """Add value ([count, megabytes]) to every ancestor of this node."""
        node = self.parent
        while node is not None:
            node.value = list(value) if node.value is None else [a + b for a, b in zip(node.value, value)]
            node = node.parent

    def walk(self, max_level=None, level=0):
        """(level, node) for this node and its descendants down to max_level, depth first."""
        yield level, self
        if max_level is None or level < max_level:
            for child in self.children_name.values():
                yield from child.walk(max_level, level + 1)

    def format(self, max_level=None):
        """A table of the nodes down to max_level: name, parameters, share of the total, MB."""
        rows = [
            ("  " * level + "--" + node.name, node.value or [0, 0.0]) for level, node in self.walk(max_level)
        ]
        total = max((self.value or [0])[0], 1)
        width = max(len("LAYER NAME"), *(len(name) for name, _ in rows)) + 1
        lines = [f"{'LAYER NAME':<{width}}\t{'#PARAMS':>15}\t{'RATIO':>10}\t{'MEM(MB)':>8}"]
        lines += [
            f"{name:<{width}}\t{count:15,d}\t{count / total:>10.2%}\t{megabytes:>8.2f}"
            for name, (count, megabytes) in rows
        ]
        return "\n" + "\n".join(lines) + "\n"


def display_parameters(model, max_level=None):
    """(table string, LayerNode tree) of the parameter counts and memory of a model's modules.

    model: a torch.nn.Module or a state dict. Buffers in the state dict count too, as in
    TextBrewer. A tensor shared by several names (tied weights) counts once; the later names
    get '(shared)' and zero. max_level limits the depth of the table, not of the tree.
    """
    if isinstance(model, torch.nn.Module):
        state_dict = model.state_dict()
    elif isinstance(model, dict):
        state_dict = model
    else:
        raise TypeError(
            f"display_parameters: expected a torch.nn.Module or a state dict, got {type(model).__name__}"
        )
    root = LayerNode("model", fullname="model")
    seen = set()
    for key, tensor in state_dict.items():
        names = key.split(".")
        node = root
        for depth, name in enumerate(names):
            if name not in node:
                node[name] = LayerNode(name, parent=node, fullname=".".join(names[: depth + 1]))
            node = node[name]
        storage = (tensor.data_ptr(), tensor.numel())
        if tensor.numel() and storage in seen:
            node.name += "(shared)"
            node.fullname += "(shared)"
            node.value = [0, 0]
        else:
            seen.add(storage)
            node.value = [tensor.numel(), tensor.numel() * tensor.element_size() / 1024 / 1024]
        node.update(node.value)
    return root.format(max_level), root
