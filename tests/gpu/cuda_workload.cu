// A real CUDA job for the real-GPU check (tests/gpu/real-gpu-check).
//
// Like a training step loop: it reads its "weights" (every --files
// .safetensors file in --data, each step), keeps device buffers, copies host
// to device, launches a kernel, copies back and checks the result against the
// CPU, for --seconds. It prints one JSON line per event on stdout with
// CLOCK_MONOTONIC nanoseconds (the clock gputier's counters use), so that the
// check can time the verdict from the job's first CUDA call.
//
// Every --checkpoint-every steps it writes a checkpoint of --checkpoint-mib
// (the device buffer, copied back) into --data as ckpt-<n>.pt and fsyncs it.
//
//   cuda_workload --data DIR [--files 4] [--seconds 30] [--mib 64]
//                 [--checkpoint-every 200] [--checkpoint-mib 16]
#include <cuda_runtime.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace {

uint64_t MonoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

bool Check(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return true;
  printf("{\"event\":\"error\",\"what\":\"%s\",\"cuda\":\"%s\"}\n", what, cudaGetErrorString(err));
  fflush(stdout);
  return false;
}

__global__ void Saxpy(float a, const float* x, float* y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    y[i] = a * x[i] + y[i];
  }
}

// Reads every file once (the step's "weights"); returns bytes read.
size_t ReadFiles(const std::vector<std::string>& files) {
  static char buf[1 << 16];
  size_t total = 0;
  for (const std::string& f : files) {
    int fd = open(f.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) total += n;
    close(fd);
  }
  return total;
}

}  // namespace

int main(int argc, char** argv) {
  std::string data = "/tmp";
  int files = 4, seconds = 30, mib = 64, checkpoint_every = 200, checkpoint_mib = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--data")) data = argv[i + 1];
    else if (!strcmp(argv[i], "--files")) files = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--seconds")) seconds = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--mib")) mib = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--checkpoint-every")) checkpoint_every = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--checkpoint-mib")) checkpoint_mib = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "cuda_workload: unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  std::vector<std::string> paths;
  for (int i = 0; i < files; ++i) {
    std::string p = data + "/shard-" + std::to_string(i) + ".safetensors";
    int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
      perror(p.c_str());
      return 1;
    }
    std::vector<char> block(1 << 20, char(i));
    if (write(fd, block.data(), block.size()) != ssize_t(block.size())) return 1;
    close(fd);
    paths.push_back(p);
  }
  printf("{\"event\":\"start\",\"mono_ns\":%llu,\"pid\":%d}\n", (unsigned long long)MonoNs(), getpid());
  fflush(stdout);
  if (!Check(cudaSetDevice(0), "cudaSetDevice") || !Check(cudaFree(nullptr), "context")) return 1;
  cudaDeviceProp prop;
  if (!Check(cudaGetDeviceProperties(&prop, 0), "properties")) return 1;
  printf("{\"event\":\"context\",\"mono_ns\":%llu,\"device\":\"%s\",\"cc\":\"%d.%d\"}\n",
         (unsigned long long)MonoNs(), prop.name, prop.major, prop.minor);
  fflush(stdout);

  const size_t n = size_t(mib) * (1 << 20) / sizeof(float);
  std::vector<float> x(n), y(n), out(n);
  srand(42);
  for (size_t i = 0; i < n; ++i) {
    x[i] = float(rand()) / RAND_MAX;
    y[i] = float(rand()) / RAND_MAX;
  }
  float *dx = nullptr, *dy = nullptr;
  if (!Check(cudaMalloc(&dx, n * sizeof(float)), "cudaMalloc x") ||
      !Check(cudaMalloc(&dy, n * sizeof(float)), "cudaMalloc y")) {
    return 1;
  }
  const uint64_t end = MonoNs() + uint64_t(seconds) * 1000000000ull;
  long steps = 0;
  double max_err = 0;
  size_t bytes_read = 0;
  while (MonoNs() < end) {
    bytes_read += ReadFiles(paths);
    const float a = 0.5f + float(steps % 7);
    if (!Check(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), "copy x") ||
        !Check(cudaMemcpy(dy, y.data(), n * sizeof(float), cudaMemcpyHostToDevice), "copy y")) {
      return 1;
    }
    Saxpy<<<1024, 256>>>(a, dx, dy, n);
    if (!Check(cudaGetLastError(), "launch") ||
        !Check(cudaMemcpy(out.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost), "copy back")) {
      return 1;
    }
    for (size_t i = 0; i < n; i += 4099) max_err = std::fmax(max_err, std::fabs(out[i] - (a * x[i] + y[i])));
    ++steps;
    if (checkpoint_every > 0 && steps % checkpoint_every == 0) {
      const uint64_t t0 = MonoNs();
      const std::string path = data + "/ckpt-" + std::to_string(steps / checkpoint_every) + ".pt";
      int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      size_t left = std::min(size_t(checkpoint_mib) << 20, n * sizeof(float));
      const char* p = reinterpret_cast<const char*>(out.data());
      bool ok = fd >= 0;
      while (ok && left > 0) {
        ssize_t w = write(fd, p, left);
        ok = w > 0;
        if (ok) {
          p += w;
          left -= size_t(w);
        }
      }
      ok = ok && fsync(fd) == 0;
      if (fd >= 0) close(fd);
      printf("{\"event\":\"checkpoint\",\"mono_ns\":%llu,\"path\":\"%s\",\"ok\":%s,\"ms\":%.2f}\n",
             (unsigned long long)MonoNs(), path.c_str(), ok ? "true" : "false", (MonoNs() - t0) / 1e6);
      fflush(stdout);
    }
    if (steps % 50 == 0) {
      printf("{\"event\":\"step\",\"mono_ns\":%llu,\"steps\":%ld}\n", (unsigned long long)MonoNs(), steps);
      fflush(stdout);
    }
  }
  cudaFree(dx);
  cudaFree(dy);
  printf("{\"event\":\"done\",\"mono_ns\":%llu,\"steps\":%ld,\"max_abs_err\":%g,\"bytes_read\":%zu}\n",
         (unsigned long long)MonoNs(), steps, max_err, bytes_read);
  fflush(stdout);
  return max_err < 1e-4 ? 0 : 3;
}
