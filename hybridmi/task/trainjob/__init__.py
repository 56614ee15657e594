"""The train step on many nodes: a Kubeflow Trainer TrainJob created, watched and harvested by a pipeline task."""
