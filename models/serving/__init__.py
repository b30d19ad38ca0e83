"""Serving: SavedModel export, running an exported model, drawing its detections."""
