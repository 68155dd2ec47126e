"""Files in and out: datasets (IDX, .npz, HDF5), images to predict on, model files,
ONNX export, and the atomic writes they all use. Above the network and its layers;
below training and the tools."""
