// Precompiled header for every clipguide target: the heavy LibTorch headers, parsed once.
// Sources still include what they use; this file only makes that cheap.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/functional.h>
#include <map>
#include <memory>
#include <string>
#include <vector>
