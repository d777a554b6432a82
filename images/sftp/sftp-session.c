/*
 * sftp-session: the login shell of the SFTP image's account. sshd runs it as
 * `sftp-session -c "<area directory> <ro|rw> [<area directory> <ro|rw> ...]"`, the forced
 * command the entrypoint writes in front of every authorized key, for every session a key
 * opens (shell, exec or the sftp subsystem alike). It confines itself with Landlock to those
 * directories (read-only for "ro") plus the read-only system files sftp-server needs, then
 * execs OpenSSH's sftp-server, starting in the first area.
 *
 * Why Landlock: a non-root sshd cannot chroot, and every session runs as sshd's own UID, so
 * file permissions cannot keep a session from sshd's host keys, its configuration, the
 * authorized keys or another area. Landlock is an unprivileged kernel sandbox: it needs no
 * capability and works under OpenShift's restricted-v2 and Docker's default seccomp profile.
 *
 * `sftp-session --check` prints the kernel's Landlock ABI and exits 0, or explains why
 * Landlock is unusable and exits 1: the entrypoint refuses to serve without it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/types.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel ABI, spelled out so the build does not depend on the headers' age. */
#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_add_rule 445
#define __NR_landlock_restrict_self 446
#endif
#define CREATE_RULESET_VERSION (1U << 0)
#define RULE_PATH_BENEATH 1

#define FS_EXECUTE (1ULL << 0)
#define FS_WRITE_FILE (1ULL << 1)
#define FS_READ_FILE (1ULL << 2)
#define FS_READ_DIR (1ULL << 3)
#define FS_REMOVE_DIR (1ULL << 4)
#define FS_REMOVE_FILE (1ULL << 5)
#define FS_MAKE_CHAR (1ULL << 6)
#define FS_MAKE_DIR (1ULL << 7)
#define FS_MAKE_REG (1ULL << 8)
#define FS_MAKE_SOCK (1ULL << 9)
#define FS_MAKE_FIFO (1ULL << 10)
#define FS_MAKE_BLOCK (1ULL << 11)
#define FS_MAKE_SYM (1ULL << 12)
#define FS_REFER (1ULL << 13)      /* ABI 2 */
#define FS_TRUNCATE (1ULL << 14)   /* ABI 3 */
#define FS_IOCTL_DEV (1ULL << 15)  /* ABI 5 */
#define NET_BIND_TCP (1ULL << 0)   /* ABI 4 */
#define NET_CONNECT_TCP (1ULL << 1)
#define SCOPE_ABSTRACT_UNIX (1ULL << 0) /* ABI 6 */
#define SCOPE_SIGNAL (1ULL << 1)

struct ruleset_attr {
	__u64 handled_access_fs;
	__u64 handled_access_net;
	__u64 scoped;
};

struct path_beneath_attr {
	__u64 allowed_access;
	__s32 parent_fd;
} __attribute__((packed));

#define SFTP_SERVER "/usr/lib/openssh/sftp-server"
#define NSS_DIR "/tmp/sftp/nss"
/* Requests no session needs and that Landlock does not govern (attribute changes) or that
 * could point outside the area (links). */
#define DENIED_REQUESTS "setstat,fsetstat,lsetstat,hardlink,symlink"

static void fail(const char *what) {
	fprintf(stderr, "sftp-session: %s\n", what);
	exit(1);
}

static int landlock_abi(void) {
	long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, CREATE_RULESET_VERSION);
	return abi < 0 ? -errno : (int)abi;
}

static const char *abi_problem(int abi) {
	if (abi == -ENOSYS)
		return "this kernel has no Landlock (Linux 5.13 or later is needed)";
	if (abi == -EOPNOTSUPP)
		return "Landlock is built in but not enabled (add landlock to the kernel's lsm= list)";
	if (abi == -EPERM)
		return "the seccomp profile forbids the landlock_* system calls";
	if (abi < 1)
		return "Landlock is not usable here";
	return NULL;
}

static void allow(int ruleset, const char *path, __u64 access, int optional) {
	struct path_beneath_attr rule = {.allowed_access = access};
	rule.parent_fd = open(path, O_PATH | O_CLOEXEC);
	if (rule.parent_fd < 0) {
		if (optional && errno == ENOENT)
			return;
		fprintf(stderr, "sftp-session: cannot open %s: %s\n", path, strerror(errno));
		exit(1);
	}
	struct stat st;
	if (fstat(rule.parent_fd, &st) == 0 && !S_ISDIR(st.st_mode))
		rule.allowed_access &= FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE;
	if (syscall(__NR_landlock_add_rule, ruleset, RULE_PATH_BENEATH, &rule, 0) != 0) {
		fprintf(stderr, "sftp-session: landlock rule for %s: %s\n", path, strerror(errno));
		exit(1);
	}
	close(rule.parent_fd);
}

/* An area is an absolute path of plain name characters with no "." or ".." component. */
static int valid_area(const char *dir) {
	if (dir[0] != '/' || dir[1] == '\0')
		return 0;
	for (const char *p = dir; *p; p++) {
		int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		            (*p >= '0' && *p <= '9') || *p == '/' || *p == '_' || *p == '-' || *p == '.';
		if (!plain)
			return 0;
		if (*p == '/' && p[1] == '.')
			return 0;
	}
	return 1;
}

int main(int argc, char **argv) {
	int abi = landlock_abi();
	if (argc == 2 && strcmp(argv[1], "--check") == 0) {
		const char *problem = abi_problem(abi);
		if (problem) {
			fprintf(stderr, "%s\n", problem);
			return 1;
		}
		printf("landlock ABI %d\n", abi);
		return 0;
	}
	if (argc != 3 || strcmp(argv[1], "-c") != 0)
		fail("this account serves SFTP only");

	/* The forced command: "<directory> <ro|rw>" pairs, written by the entrypoint. */
	enum { MAX_AREAS = 8 };
	char command[8192];
	char *dirs[MAX_AREAS], *modes[MAX_AREAS];
	int areas = 0, all_read_only = 1;
	if (strlen(argv[2]) >= sizeof(command))
		fail("this account serves SFTP only");
	strcpy(command, argv[2]);
	for (char *save = NULL, *word = strtok_r(command, " ", &save); word;
	     word = strtok_r(NULL, " ", &save)) {
		char *mode = strtok_r(NULL, " ", &save);
		if (areas == MAX_AREAS || !mode || !valid_area(word) ||
		    (strcmp(mode, "ro") != 0 && strcmp(mode, "rw") != 0))
			fail("this account serves SFTP only");
		dirs[areas] = word;
		modes[areas] = mode;
		all_read_only &= strcmp(mode, "ro") == 0;
		areas++;
	}
	if (areas == 0)
		fail("this account serves SFTP only");
	const char *problem = abi_problem(abi);
	if (problem)
		fail(problem);

	__u64 fs = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_READ_DIR | FS_REMOVE_DIR |
	           FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR | FS_MAKE_REG | FS_MAKE_SOCK |
	           FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM;
	if (abi >= 2)
		fs |= FS_REFER;
	if (abi >= 3)
		fs |= FS_TRUNCATE;
	if (abi >= 5)
		fs |= FS_IOCTL_DEV;
	struct ruleset_attr attr = {.handled_access_fs = fs};
	size_t attr_size = sizeof(attr.handled_access_fs);
	if (abi >= 4) {
		/* Handled with no rule: no TCP bind or connect at all. */
		attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP;
		attr_size = offsetof(struct ruleset_attr, scoped);
	}
	if (abi >= 6) {
		attr.scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL;
		attr_size = sizeof(attr);
	}
	int ruleset = (int)syscall(__NR_landlock_create_ruleset, &attr, attr_size, 0);
	if (ruleset < 0)
		fail("cannot create a Landlock ruleset");

	const __u64 read_only = FS_READ_FILE | FS_READ_DIR;
	for (int i = 0; i < areas; i++) {
		__u64 area = read_only;
		if (strcmp(modes[i], "rw") == 0) {
			area |= FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG;
			area |= fs & (FS_REFER | FS_TRUNCATE);
		}
		allow(ruleset, dirs[i], area, 0);
	}
	/* What sftp-server itself needs: programs and libraries, the loader cache, time zones,
	 * the nss_wrapper passwd that names the UID, and /dev/null. Nothing else is reachable. */
	allow(ruleset, "/usr", FS_EXECUTE | read_only, 0);
	allow(ruleset, "/etc/ld.so.cache", FS_READ_FILE, 1);
	allow(ruleset, "/etc/localtime", FS_READ_FILE, 1);
	allow(ruleset, NSS_DIR, read_only, 0);
	allow(ruleset, "/dev/null", FS_READ_FILE | FS_WRITE_FILE, 0);

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fail("cannot set no_new_privs");
	if (syscall(__NR_landlock_restrict_self, ruleset, 0) != 0)
		fail("cannot enter the Landlock sandbox");
	close(ruleset);

	/* sftp-server looks its UID up in passwd: the arbitrary UID is known to nss_wrapper only. */
	setenv("LD_PRELOAD", "libnss_wrapper.so", 1);
	setenv("NSS_WRAPPER_PASSWD", NSS_DIR "/passwd", 1);
	setenv("NSS_WRAPPER_GROUP", NSS_DIR "/group", 1);
	/* -R when every area is read-only; otherwise Landlock alone keeps "ro" areas unwritable. */
	if (all_read_only) {
		char *const args[] = {"sftp-server", "-R", "-d", dirs[0], "-P", DENIED_REQUESTS, NULL};
		execv(SFTP_SERVER, args);
	} else {
		char *const args[] = {"sftp-server", "-u", "0002", "-d", dirs[0],
		                      "-P", DENIED_REQUESTS, NULL};
		execv(SFTP_SERVER, args);
	}
	fail("cannot run " SFTP_SERVER);
	return 1;
}
