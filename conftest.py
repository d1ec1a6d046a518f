# Makes the repository root importable for pytest (model, sample, train, em, data, kernels).
