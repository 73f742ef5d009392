"""An ordinary script (argparse, sys.exit) with its loop marked: a trial's workload.script."""

import argparse
import sys

import torch

from tuner import Tuned

parser = argparse.ArgumentParser()
parser.add_argument("--width", type=int, required=True)
arguments = parser.parse_args()
tuned = Tuned.load()
model = torch.nn.Linear(arguments.width, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
model, optimizer = tuned.model(model, optimizer)
data = torch.utils.data.TensorDataset(torch.randn(256, arguments.width))
for _epoch in range(1000):
    for (rows,) in tuned.steps(tuned.loader(data, batch_size=16)):
        loss = model(tuned.to_device(rows)).pow(2).mean()
        tuned.backward(loss)
        tuned.step(optimizer)
        tuned.report(loss=loss)
sys.exit(0)
