"""Files in and out: datasets (IDX, .npz, HDF5), images to predict on, model files,
ONNX export, the atomic writes they all use and where a command may write
(output_policy). Above the network and its layers; below training and the tools."""
