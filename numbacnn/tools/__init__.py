"""What a user looks at: scoring (accuracy, confusion matrix) and pictures (plots).
Above the files (``numbacnn.io``), below training."""
