"""Transfer learning from a base pretrained by Keras itself (plain scripts, not `jaxcnn train` recipes)."""
