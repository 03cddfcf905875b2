"""Projections that map a student's features to the teacher's size, for intermediate matches."""

from torch import nn


def linear_projection(dim_in, dim_out):
    layer = nn.Linear(dim_in, dim_out)
    nn.init.normal_(layer.weight, std=0.02)  # BERT's initialisation
    nn.init.zeros_(layer.bias)
    return layer


def projection_with_activation(activation):
    def build(dim_in, dim_out):
        return nn.Sequential(linear_projection(dim_in, dim_out), activation())

    return build


PROJ_MAP = {
    "linear": linear_projection,
    "relu": projection_with_activation(nn.ReLU),
    "tanh": projection_with_activation(nn.Tanh),
}


def initializer_builder(std):
    """A function for module.apply: BERT's initialisation (normal weights of this std, zero bias)
    of every Linear and Embedding."""

    def init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    return init_weights
