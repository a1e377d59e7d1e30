/* The two workloads of the headline benchmark, run inside runc containers
 * (`runc exec`), linked statically so that a busybox rootfs can run it.
 *
 * Each waits until <gate> exists before it starts (the benchmark moves it
 * into the slow tier's throttle group first).
 *
 *   job gpu <gate> <gpu device> <steps> <checkpoint MiB> <tensor dir>
 *     Per step: GPU ioctls on <gpu device> (the benchmark's test device
 *     answers ENOTTY: the call, not its answer, is what gputier counts), a
 *     read of every file in <tensor dir>, then a checkpoint of <checkpoint
 *     MiB> written in 1 MiB writes to /data/ckpt-<step>.pt and fsync'ed; the
 *     checkpoint from two steps back is removed (a trainer keeps the last
 *     two). Prints "first_ioctl <ns>" and, per step, "step <i> <start ns>
 *     <end ns>" (CLOCK_MONOTONIC: the container shares the host's clock).
 *
 *   job cpu <gate> <stop file>
 *     A log writer: 256 KiB appends to /data/cpu-log-<k>.log with an fsync
 *     after each, a new file every 8 MiB over four files (the oldest is
 *     truncated), until <stop file> exists. Prints "cpu <bytes> <start ns>
 *     <end ns>".
 *
 * Exit codes: 0, 2 (usage), 3 (a file could not be opened), 4 (a write or
 * fsync failed). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static char buf[1 << 20];

static int read_dir_files(const char *dir)
{
	char path[4096];
	struct dirent *e;
	DIR *d = opendir(dir);

	if (!d)
		return 3;
	while ((e = readdir(d)) != NULL) {
		int fd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		while (read(fd, buf, sizeof(buf)) > 0)
			;
		close(fd);
	}
	closedir(d);
	return 0;
}

static int gpu_job(const char *dev, int steps, int mib, const char *tensors)
{
	char path[64];
	int gpu = open(dev, O_RDWR | O_CLOEXEC);
	int step, i;

	if (gpu < 0)
		return 3;
	memset(buf, 'w', sizeof(buf));
	printf("first_ioctl %llu\n", (unsigned long long)now_ns());
	for (step = 0; step < steps; ++step) {
		uint64_t start, end;
		int fd;

		for (i = 0; i < 64; ++i)
			(void)ioctl(gpu, _IOWR('F', 0x2b, uint64_t), buf);
		if (read_dir_files(tensors) != 0)
			return 3;
		snprintf(path, sizeof(path), "/data/ckpt-%d.pt", step);
		start = now_ns();
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return 3;
		for (i = 0; i < mib; ++i)
			if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
				return 4;
		if (fsync(fd) != 0)
			return 4;
		close(fd);
		end = now_ns();
		printf("step %d %llu %llu\n", step, (unsigned long long)start, (unsigned long long)end);
		fflush(stdout);
		if (step >= 2) {
			snprintf(path, sizeof(path), "/data/ckpt-%d.pt", step - 2);
			unlink(path);
		}
	}
	close(gpu);
	return 0;
}

static int cpu_job(const char *stop)
{
	const size_t chunk = 256 << 10, per_file = 8 << 20;
	uint64_t bytes = 0, start = now_ns();
	char path[64];
	int k = 0;

	memset(buf, 'c', sizeof(buf));
	while (access(stop, F_OK) != 0) {
		size_t in_file;
		int fd;

		snprintf(path, sizeof(path), "/data/cpu-log-%d.log", k++ % 4);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return 3;
		for (in_file = 0; in_file < per_file && access(stop, F_OK) != 0; in_file += chunk) {
			if (write(fd, buf, chunk) != (ssize_t)chunk || fsync(fd) != 0)
				return 4;
			bytes += chunk;
		}
		close(fd);
	}
	printf("cpu %llu %llu %llu\n", (unsigned long long)bytes, (unsigned long long)start,
	       (unsigned long long)now_ns());
	return 0;
}

static void wait_for(const char *gate)
{
	while (access(gate, F_OK) != 0)
		usleep(1000);
}

int main(int argc, char **argv)
{
	if (argc == 7 && strcmp(argv[1], "gpu") == 0) {
		wait_for(argv[2]);
		return gpu_job(argv[3], atoi(argv[4]), atoi(argv[5]), argv[6]);
	}
	if (argc == 4 && strcmp(argv[1], "cpu") == 0) {
		wait_for(argv[2]);
		return cpu_job(argv[3]);
	}
	fprintf(stderr, "usage: job gpu <gate> <device> <steps> <MiB> <tensor dir> | job cpu <gate> <stop file>\n");
	return 2;
}
