"""quickstart-unlearning: Flower's quickstart-pytorch app with unlearn-fl added."""
