#pragma once

// Umbrella header: every public dlcore component. Prefer including the
// component headers you use; this one costs the compile time of all of them.
// The c10d glue in dlcore/distributed/ is left out, as torch/torch.h leaves
// out torch/csrc/distributed: include it where you use it.

#include <dlcore/data/batches.h>
#include <dlcore/data/cifar.h>
#include <dlcore/data/fashion_mnist.h>
#include <dlcore/data/hashtag_resampler.h>
#include <dlcore/data/idx.h>
#include <dlcore/data/label_noise.h>
#include <dlcore/data/pseudo_label.h>
#include <dlcore/data/split.h>
#include <dlcore/data/tag_lists.h>
#include <dlcore/data/tensor_dataset.h>
#include <dlcore/io/csv.h>
#include <dlcore/io/files.h>
#include <dlcore/io/json.h>
#include <dlcore/io/number_format.h>
#include <dlcore/nn/batch_norm_policy.h>
#include <dlcore/nn/checkpoint.h>
#include <dlcore/nn/forward_child.h>
#include <dlcore/nn/freeze.h>
#include <dlcore/nn/heads.h>
#include <dlcore/nn/layer_math.h>
#include <dlcore/nn/models/alexnet.h>
#include <dlcore/nn/models/googlenet.h>
#include <dlcore/nn/models/lenet5.h>
#include <dlcore/nn/models/resnet.h>
#include <dlcore/nn/models/resnet_cifar.h>
#include <dlcore/nn/models/rpn.h>
#include <dlcore/nn/models/vgg.h>
#include <dlcore/nn/safetensors.h>
#include <dlcore/nn/summary.h>
#include <dlcore/optim/cosine_annealing_lr.h>
#include <dlcore/optim/cyclic_lr.h>
#include <dlcore/optim/gradual_unfreezing.h>
#include <dlcore/optim/lambda_lr.h>
#include <dlcore/optim/linear_lr.h>
#include <dlcore/optim/lr_scheduler.h>
#include <dlcore/optim/momentum.h>
#include <dlcore/optim/one_cycle_lr.h>
#include <dlcore/optim/param_groups.h>
#include <dlcore/optim/reduce_lr_on_plateau.h>
#include <dlcore/optim/sequential_lr.h>
#include <dlcore/optim/step_lr.h>
#include <dlcore/per_group.h>
#include <dlcore/study/batch_size_study.h>
#include <dlcore/study/lr_finder.h>
#include <dlcore/train/allocator.h>
#include <dlcore/train/history.h>
#include <dlcore/train/losses.h>
#include <dlcore/train/plot.h>
#include <dlcore/train/predict.h>
#include <dlcore/train/progress.h>
#include <dlcore/train/threads.h>
#include <dlcore/train/train_loop.h>
#include <dlcore/version.h>
