#pragma once

// Per-image tag lists (`TagLists`) and the soft targets built from them
// (`soft_targets`): the multi-label data of the hashtag resampler and of
// label-noise injection.

#include <c10/util/Exception.h>
#include <torch/types.h>

#include <dlcore/detail/tensor_check.h>

#include <cstdint>
#include <string>

namespace dlcore {

/// Per-image tag lists in compressed sparse row form: image i carries the tags
/// `tags[offsets[i] : offsets[i+1]]`. Single-label data is the special case of
/// one tag per image (see `from_labels`); an image with an empty list has no
/// tag.
///
/// Example:
///   // image 0: tags {2, 5}; image 1: no tag; image 2: tag {5}
///   dlcore::TagLists t{torch::tensor({0, 2, 2, 3}), torch::tensor({2, 5, 5})};
struct TagLists {
  /// int64 [N + 1], non-decreasing, offsets[0] = 0, offsets[N] = tags.numel().
  torch::Tensor offsets;
  /// int64 [P]: the tag ids of all images, image after image.
  torch::Tensor tags;

  /// Number of images N.
  int64_t size() const {
    return offsets.defined() && offsets.numel() > 0 ? offsets.numel() - 1 : 0;
  }

  /// One tag per image from single labels (int64 or int32 [N]); a negative
  /// label means "no tag".
  static TagLists from_labels(const torch::Tensor& labels) {
    TORCH_CHECK(
        labels.defined() && labels.dim() == 1 &&
            (labels.scalar_type() == torch::kLong ||
             labels.scalar_type() == torch::kInt),
        "TagLists::from_labels: expected int64 or int32 labels of shape [N], "
        "but got ",
        labels.defined() ? labels.toString() : std::string("undefined"),
        labels.defined() ? labels.sizes() : torch::IntArrayRef{});
    detail::check_has_data(labels, "TagLists::from_labels", "labels");
    auto l = labels.to(torch::kCPU, torch::kLong).contiguous();
    auto has = l.ge(0);
    TagLists out;
    out.offsets = torch::zeros({l.numel() + 1}, torch::kLong);
    out.offsets.slice(0, 1).copy_(has.to(torch::kLong).cumsum(0));
    out.tags = l.masked_select(has);
    return out;
  }

  /// Checks shapes, dtypes and offsets; `owner` names the caller in errors.
  void check(const std::string& owner) const {
    TORCH_CHECK(
        offsets.defined() && tags.defined(),
        owner,
        ": expected TagLists with offsets and tags, but got an undefined "
        "tensor");
    TORCH_CHECK(
        offsets.dim() == 1 && offsets.numel() >= 1 &&
            offsets.scalar_type() == torch::kLong,
        owner,
        ": expected int64 offsets of shape [N + 1], but got ",
        offsets.toString(),
        offsets.sizes());
    TORCH_CHECK(
        tags.dim() == 1 && (tags.scalar_type() == torch::kLong ||
                            tags.scalar_type() == torch::kInt),
        owner,
        ": expected int64 or int32 tags of shape [P], but got ",
        tags.toString(),
        tags.sizes());
    detail::check_has_data(offsets, owner.c_str(), "offsets");
    detail::check_has_data(tags, owner.c_str(), "tags");
    // CUDA tag lists are copied to the CPU once, here and by the sampler.
    auto off = offsets.to(torch::kCPU).contiguous();
    const int64_t* o = off.data_ptr<int64_t>();
    const int64_t n = off.numel() - 1;
    TORCH_CHECK(
        o[0] == 0 && o[n] == tags.numel(),
        owner,
        ": expected offsets[0] = 0 and offsets[N] = number of tags (",
        tags.numel(),
        "), but got ",
        o[0],
        " and ",
        o[n]);
    for (int64_t i = 0; i < n; ++i) {
      TORCH_CHECK(
          o[i + 1] >= o[i],
          owner,
          ": expected non-decreasing offsets, but offsets[",
          i + 1,
          "] = ",
          o[i + 1],
          " < offsets[",
          i,
          "] = ",
          o[i]);
    }
  }
};

/// Soft targets of Mahajan et al.: row b of the result is 1/k on each of the
/// k tags of image indices[b] (zero for an untagged image), float32 [B, T].
///
/// Example:
///   auto y = dlcore::soft_targets(tags, batch_indices, num_tags);
///   auto loss = dlcore::soft_target_cross_entropy(model->forward(x), y);
inline torch::Tensor soft_targets(
    const TagLists& tags, const torch::Tensor& indices, int64_t num_tags) {
  TORCH_CHECK(
      indices.defined() && indices.dim() == 1 &&
          indices.scalar_type() == torch::kLong,
      "soft_targets: expected int64 indices of shape [B], but got ",
      indices.defined() ? indices.toString() : std::string("undefined"));
  TORCH_CHECK(
      num_tags >= 1, "soft_targets: num_tags must be >= 1, but got ", num_tags);
  TORCH_CHECK(
      tags.offsets.defined() && tags.offsets.scalar_type() == torch::kLong &&
          tags.offsets.dim() == 1 && tags.offsets.numel() >= 1 &&
          tags.tags.defined() && tags.tags.dim() == 1,
      "soft_targets: expected TagLists with int64 offsets [N + 1] and tags "
      "[P]");
  detail::check_has_data(indices, "soft_targets", "indices");
  detail::check_has_data(tags.offsets, "soft_targets", "offsets");
  detail::check_has_data(tags.tags, "soft_targets", "tags");
  auto off = tags.offsets.to(torch::kCPU).contiguous();
  auto t = tags.tags.to(torch::kCPU, torch::kLong).contiguous();
  auto idx = indices.to(torch::kCPU).contiguous();
  const int64_t b = idx.numel();
  auto out = torch::zeros({b, num_tags}, torch::kFloat);
  const int64_t* o = off.data_ptr<int64_t>();
  const int64_t* tp = t.data_ptr<int64_t>();
  const int64_t* ip = idx.data_ptr<int64_t>();
  float* y = out.data_ptr<float>();
  const int64_t n = tags.size();
  for (int64_t r = 0; r < b; ++r) {
    const int64_t i = ip[r];
    TORCH_CHECK(
        i >= 0 && i < n,
        "soft_targets: index ",
        i,
        " is outside [0, N = ",
        n,
        ")");
    // The offsets of the images in the batch are checked where they are
    // used (O(B), not O(N) per call): inside [0, P] and non-decreasing.
    TORCH_CHECK(
        o[0] == 0 && o[n] == t.numel() && o[i] >= 0 && o[i] <= o[i + 1] &&
            o[i + 1] <= t.numel(),
        "soft_targets: expected offsets with offsets[0] = 0, offsets[N] = "
        "number of tags (",
        t.numel(),
        ") and non-decreasing, but image ",
        i,
        " has offsets [",
        o[i],
        ", ",
        o[i + 1],
        "] (offsets[0] = ",
        o[0],
        ", offsets[N] = ",
        o[n],
        ")");
    const int64_t k = o[i + 1] - o[i];
    for (int64_t q = o[i]; q < o[i + 1]; ++q) {
      TORCH_CHECK(
          tp[q] >= 0 && tp[q] < num_tags,
          "soft_targets: image ",
          i,
          " has tag id ",
          tp[q],
          ", outside [0, num_tags = ",
          num_tags,
          ")");
      y[r * num_tags + tp[q]] += 1.0f / static_cast<float>(k);
    }
  }
  return out.to(indices.device());
}

} // namespace dlcore
