#pragma once

#include <c10/util/Exception.h>
#include <torch/types.h>

#include <dlcore/data/detail/gzip_stream.h>
#include <dlcore/data/detail/idx_format.h>
#include <dlcore/detail/tensor_check.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace dlcore {

/// Reads an IDX file (the MNIST / Fashion-MNIST format) into a tensor of the
/// file's dtype and dimensions.
///
/// The file may be gzip-compressed or plain; gzip is recognised by its magic
/// bytes 1f 8b, not by the file name. Layout: the magic number
/// `00 00 <dtype> <ndim>`, `ndim` big-endian uint32 dimensions, then the
/// elements row-major and big-endian. Dtype codes: 0x08 uint8 (`kByte`),
/// 0x09 int8 (`kChar`), 0x0B int16 (`kShort`), 0x0C int32 (`kInt`), 0x0D
/// float32 (`kFloat`), 0x0E float64 (`kDouble`).
///
/// Everything is validated before the data is trusted: the magic number, the
/// dtype code, 1 to 16 dimensions each >= 1, and the exact byte count (fewer
/// bytes than the header declares is "truncated", more is "trailing data");
/// for gzip files also the deflate stream and its CRC. The header's claim is
/// checked against the file size before any memory is allocated (exactly for
/// plain files; against deflate's maximum ratio of 1032:1 for gzip files).
/// Every error is a `c10::Error` whose message names the file and what was
/// wrong. The data is read in one pass straight into the tensor's buffer.
///
/// Example:
///   torch::Tensor images = dlcore::read_idx(
///       "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
///   images.sizes();  // [60000, 28, 28], kByte
///
/// Differences from PyTorch (Python): torchvision's `read_sn3_pascalvincent_
/// tensor` reads plain files only (it decompresses the `.gz` archives to disk
/// first), trusts the byte count it is given and asserts on the magic number;
/// this reader takes either form, and reports truncation and trailing data.
inline torch::Tensor read_idx(const std::string& path) {
  constexpr const char* kOwner = "read_idx";
  detail::GzipReader in(path, kOwner);

  unsigned char magic[4] = {0, 0, 0, 0};
  const int64_t got_magic = in.read(magic, 4);
  TORCH_CHECK(
      got_magic > 0,
      kOwner,
      ": ",
      path,
      ": expected an IDX file but it is empty");
  TORCH_CHECK(
      got_magic == 4,
      kOwner,
      ": ",
      path,
      ": truncated header: expected 4 bytes of magic number but got ",
      got_magic);
  TORCH_CHECK(
      magic[0] == 0 && magic[1] == 0,
      kOwner,
      ": ",
      path,
      ": expected the IDX magic number 0x00 0x00 <dtype> <ndim> but got ",
      detail::idx_hex(magic[0]),
      " ",
      detail::idx_hex(magic[1]),
      " ",
      detail::idx_hex(magic[2]),
      " ",
      detail::idx_hex(magic[3]));
  const c10::ScalarType dtype = detail::idx_dtype_from_code(magic[2]);
  TORCH_CHECK(
      dtype != c10::ScalarType::Undefined,
      kOwner,
      ": ",
      path,
      ": expected an IDX dtype code 0x08 (uint8), 0x09 (int8), 0x0b (int16), "
      "0x0c (int32), 0x0d (float32) or 0x0e (float64) but got ",
      detail::idx_hex(magic[2]));
  const int ndim = magic[3];
  TORCH_CHECK(
      ndim >= 1 && ndim <= detail::kIdxMaxDims,
      kOwner,
      ": ",
      path,
      ": expected 1 to ",
      detail::kIdxMaxDims,
      " dimensions but the header declares ",
      ndim);

  unsigned char dims_raw[4 * detail::kIdxMaxDims];
  const int64_t got_dims = in.read(dims_raw, 4 * ndim);
  TORCH_CHECK(
      got_dims == 4 * ndim,
      kOwner,
      ": ",
      path,
      ": truncated header: expected ",
      4 * ndim,
      " bytes of dimensions (",
      ndim,
      " x uint32) but got ",
      got_dims);
  const int64_t elem_size = static_cast<int64_t>(c10::elementSize(dtype));
  const int64_t header_bytes = 4 + 4 * int64_t{ndim};
  std::vector<int64_t> sizes(static_cast<size_t>(ndim));
  int64_t payload_bytes = elem_size;
  for (int d = 0; d < ndim; ++d) {
    const int64_t n = detail::idx_load_be32(dims_raw + 4 * d);
    TORCH_CHECK(
        n >= 1,
        kOwner,
        ": ",
        path,
        ": expected every dimension >= 1 but dimension ",
        d,
        " is 0");
    TORCH_CHECK(
        payload_bytes <= std::numeric_limits<int64_t>::max() / n,
        kOwner,
        ": ",
        path,
        ": the header's dimensions overflow a 64-bit byte count");
    payload_bytes *= n;
    sizes[static_cast<size_t>(d)] = n;
  }

  // Check the header's claim against the file before allocating anything.
  if (in.gzip()) {
    const int64_t ratio = detail::kGzipMaxRatio;
    TORCH_CHECK(
        in.file_bytes() <= std::numeric_limits<int64_t>::max() / ratio &&
            payload_bytes <= ratio * in.file_bytes(),
        kOwner,
        ": ",
        path,
        ": truncated or corrupt: the header declares ",
        payload_bytes,
        " bytes of data but a gzip file of ",
        in.file_bytes(),
        " bytes cannot hold more than ",
        ratio,
        " times that");
  } else {
    const int64_t available = in.file_bytes() - header_bytes;
    TORCH_CHECK(
        available >= payload_bytes,
        kOwner,
        ": ",
        path,
        ": truncated: the header declares ",
        payload_bytes,
        " bytes of data but only ",
        available,
        " follow the ",
        header_bytes,
        "-byte header");
    TORCH_CHECK(
        available == payload_bytes,
        kOwner,
        ": ",
        path,
        ": trailing data: the header declares ",
        payload_bytes,
        " bytes of data but ",
        available,
        " follow the ",
        header_bytes,
        "-byte header");
  }

  torch::Tensor out;
  try {
    out = at::empty(sizes, at::TensorOptions().dtype(dtype));
  } catch (const c10::Error& e) {
    TORCH_CHECK(
        false,
        kOwner,
        ": ",
        path,
        ": cannot allocate ",
        payload_bytes,
        " bytes for the data the header declares (",
        e.what_without_backtrace(),
        ")");
  }
  const int64_t got = in.read(out.data_ptr(), payload_bytes);
  TORCH_CHECK(
      got == payload_bytes,
      kOwner,
      ": ",
      path,
      ": truncated: the header declares ",
      payload_bytes,
      " bytes of data but only ",
      got,
      " follow the ",
      header_bytes,
      "-byte header");
  unsigned char extra = 0;
  TORCH_CHECK(
      in.read(&extra, 1) == 0,
      kOwner,
      ": ",
      path,
      ": trailing data: more than the ",
      payload_bytes,
      " bytes of data the header declares follow the ",
      header_bytes,
      "-byte header");
  if (detail::idx_host_is_little_endian() && elem_size > 1) {
    detail::idx_swap_bytes(
        out.data_ptr(), out.numel(), static_cast<int>(elem_size));
  }
  return out;
}

/// Writes `tensor` as an IDX file, gzip-compressed when `gzip` is true.
/// The file is replaced atomically (a temporary file in the same folder,
/// then a rename). `tensor` must have a dtype IDX stores (uint8, int8,
/// int16, int32, float32, float64) and 1 to 16 dimensions, each >= 1 and
/// < 2^32; it may live on any device and need not be contiguous.
///
/// Example:
///   dlcore::write_idx("labels-idx1-ubyte.gz", labels.to(torch::kByte), true);
///   dlcore::read_idx("labels-idx1-ubyte.gz");  // the same tensor back
inline void write_idx(
    const std::string& path, const torch::Tensor& tensor, bool gzip = false) {
  constexpr const char* kOwner = "write_idx";
  TORCH_CHECK(
      tensor.defined(),
      kOwner,
      ": ",
      path,
      ": expected a defined tensor but got an undefined one");
  detail::check_has_data(tensor, kOwner, "a tensor");
  const uint8_t code = detail::idx_code_from_dtype(tensor.scalar_type());
  TORCH_CHECK(
      code != 0,
      kOwner,
      ": ",
      path,
      ": expected a uint8, int8, int16, int32, float32 or float64 tensor but "
      "got ",
      tensor.scalar_type());
  TORCH_CHECK(
      tensor.dim() >= 1 && tensor.dim() <= detail::kIdxMaxDims,
      kOwner,
      ": ",
      path,
      ": expected 1 to ",
      detail::kIdxMaxDims,
      " dimensions but got ",
      tensor.dim());
  for (int64_t d = 0; d < tensor.dim(); ++d) {
    TORCH_CHECK(
        tensor.size(d) >= 1 &&
            tensor.size(d) <= std::numeric_limits<uint32_t>::max(),
        kOwner,
        ": ",
        path,
        ": expected every dimension in [1, 2^32) but got sizes ",
        tensor.sizes());
  }
  const torch::Tensor t = tensor.to(at::kCPU).contiguous();
  const int64_t elem_size = static_cast<int64_t>(t.element_size());
  const int64_t header_bytes = 4 + 4 * t.dim();
  const int64_t payload_bytes = t.numel() * elem_size;
  std::vector<unsigned char> buf(
      static_cast<size_t>(header_bytes + payload_bytes));
  buf[0] = 0;
  buf[1] = 0;
  buf[2] = code;
  buf[3] = static_cast<unsigned char>(t.dim());
  for (int64_t d = 0; d < t.dim(); ++d) {
    detail::idx_store_be32(
        buf.data() + 4 + 4 * d, static_cast<uint32_t>(t.size(d)));
  }
  std::memcpy(
      buf.data() + header_bytes,
      t.data_ptr(),
      static_cast<size_t>(payload_bytes));
  if (detail::idx_host_is_little_endian() && elem_size > 1) {
    detail::idx_swap_bytes(
        buf.data() + header_bytes, t.numel(), static_cast<int>(elem_size));
  }
  detail::write_file_atomically(
      path, buf.data(), static_cast<int64_t>(buf.size()), gzip, kOwner);
}

} // namespace dlcore
