"""The chart's rendered RayService as a multi-node Ray cluster on one machine (``python -m tools.multinode``)."""
