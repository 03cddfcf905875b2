"""What each model returns for its distiller: the features the distiller's losses read, and for
the per-layer ones (relations, attention scores) the layers its matches name on that side only,
so every other layer keeps SDPA."""


def request_features(distiller, teachers, student):
    """Ask each model (modeling.BertForGLUESimple.return_features) for what the distiller reads;
    returns distiller.features_read()."""
    features = distiller.features_read()
    layers = distiller.layers_read()
    for model, side in [(teacher, "teacher") for teacher in teachers] + [(student, "student")]:
        model.return_features(
            hidden="hidden" in features, attention="attention" in features, **layers.get(side, {})
        )
    return features
