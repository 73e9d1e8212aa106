/*
 * dbtest.c - see dbtest.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dbtest.h"

#define MDB_START_MS 90000
#define MDB_STOP_MS 20000

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void seterr(struct mdbtest *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(struct mdbtest *m, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m->err, sizeof m->err, fmt, ap);
	va_end(ap);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) == 0 || errno == ENOENT ? 0 : 0;
}

static void rm_tree(const char *dir)
{
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void dump_tail(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[512];
	fprintf(stderr, "---- %s ----\n", path);
	while (fgets(line, sizeof line, f))
		fputs(line, stderr);
	fclose(f);
}

/* Runs argv with stdout and stderr into log; the exit status or -1. */
static int run(char *const argv[], const char *log)
{
	pid_t p = fork();
	if (p < 0)
		return -1;
	if (p == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(p, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	int port = -1;
	if (s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(s, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (s >= 0)
		close(s);
	return port;
}

static bool is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The data directory: copied from the cache, else made by
 * mariadb-install-db (and then kept in the cache for the next start). */
static int make_datadir(struct mdbtest *m, const char *data, const char *log)
{
	char cache[300] = "";
	const char *c = getenv("MDBTEST_CACHE");
	const char *pgc = getenv("PGTEST_CACHE");
	if (c && *c)
		snprintf(cache, sizeof cache, "%s", c);
	else if (pgc && *pgc)
		snprintf(cache, sizeof cache, "%s-mariadb", pgc);
	char tmpl[360];
	snprintf(tmpl, sizeof tmpl, "%s/data", cache);
	if (cache[0] && is_dir(tmpl)) {
		char *cp[] = {"cp", "-a", tmpl, (char *)data, NULL};
		if (run(cp, log) == 0)
			return 0;
		rm_tree(data);
	}
	char dd[200];
	snprintf(dd, sizeof dd, "--datadir=%s", data);
	char *inst[] = {"mariadb-install-db",
	                "--no-defaults",
	                dd,
	                geteuid() == 0 ? "--user=root" : "--skip-name-resolve",
	                "--auth-root-authentication-method=normal",
	                "--skip-test-db",
	                "--skip-name-resolve",
	                NULL};
	if (run(inst, log) != 0) {
		seterr(m, "mariadb-install-db failed (log: %s)", log);
		dump_tail(log);
		return -1;
	}
	if (cache[0]) {
		/* Copy beside the cache, then rename: a concurrent start sees a
		 * whole template or none. */
		char tmp[360], mk[320];
		snprintf(mk, sizeof mk, "%s", cache);
		mkdir(mk, 0755);
		snprintf(tmp, sizeof tmp, "%s/data.%d", cache, (int)getpid());
		char *cp[] = {"cp", "-a", (char *)data, tmp, NULL};
		if (run(cp, log) == 0 && rename(tmp, tmpl) != 0)
			rm_tree(tmp);
	}
	return 0;
}

MYSQL *mdbtest_connect(struct mdbtest *m, const char *db)
{
	MYSQL *c = mysql_init(NULL);
	unsigned t = 10;
	if (!c) {
		seterr(m, "mysql_init failed");
		return NULL;
	}
	mysql_optionsv(c, MYSQL_OPT_CONNECT_TIMEOUT, &t);
	mysql_optionsv(c, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	if (!mysql_real_connect(c, "localhost", "root", NULL, db, 0, m->socket,
	                        CLIENT_MULTI_STATEMENTS)) {
		seterr(m, "connect %s: %s", m->socket, mysql_error(c));
		mysql_close(c);
		return NULL;
	}
	return c;
}

int mdbtest_sql(struct mdbtest *m, const char *sql)
{
	MYSQL *c = mdbtest_connect(m, NULL);
	if (!c)
		return -1;
	int rc = 0;
	if (mysql_query(c, sql)) {
		seterr(m, "%s: %s", sql, mysql_error(c));
		rc = -1;
	}
	/* Every statement's result, so an error in a later one shows. */
	while (rc == 0) {
		MYSQL_RES *r = mysql_store_result(c);
		if (r)
			mysql_free_result(r);
		int n = mysql_next_result(c);
		if (n > 0) {
			seterr(m, "%s: %s", sql, mysql_error(c));
			rc = -1;
		}
		if (n != 0)
			break;
	}
	mysql_close(c);
	return rc;
}

int mdbtest_start(struct mdbtest *m)
{
	memset(m, 0, sizeof *m);
	double t0 = now_ms();
	snprintf(m->dir, sizeof m->dir, "/tmp/mdbtest-XXXXXX");
	if (!mkdtemp(m->dir)) {
		seterr(m, "mkdtemp: %s", strerror(errno));
		return -1;
	}
	char data[200], log[200], errlog[200], pidf[200];
	snprintf(data, sizeof data, "%s/data", m->dir);
	snprintf(log, sizeof log, "%s/setup.log", m->dir);
	snprintf(errlog, sizeof errlog, "%s/server.log", m->dir);
	snprintf(pidf, sizeof pidf, "%s/server.pid", m->dir);
	snprintf(m->socket, sizeof m->socket, "%s/sock", m->dir);
	if (make_datadir(m, data, log) != 0) {
		rm_tree(m->dir);
		return -1;
	}
	for (int attempt = 0; attempt < 3; attempt++) {
		m->port = free_port();
		char a_dd[220], a_sock[200], a_port[32], a_pid[220], a_log[220];
		snprintf(a_dd, sizeof a_dd, "--datadir=%s", data);
		snprintf(a_sock, sizeof a_sock, "--socket=%s", m->socket);
		snprintf(a_port, sizeof a_port, "--port=%d", m->port);
		snprintf(a_pid, sizeof a_pid, "--pid-file=%s", pidf);
		snprintf(a_log, sizeof a_log, "--log-error=%s", errlog);
		char *argv[] = {"/usr/sbin/mariadbd",
		                "--no-defaults",
		                geteuid() == 0 ? "--user=root" : "--skip-name-resolve",
		                a_dd,
		                a_sock,
		                a_port,
		                "--bind-address=127.0.0.1",
		                a_pid,
		                a_log,
		                "--skip-name-resolve",
		                "--skip-log-bin",
		                "--innodb-buffer-pool-size=16M",
		                "--innodb-flush-log-at-trx-commit=0",
		                "--character-set-server=utf8mb4",
		                "--collation-server=utf8mb4_unicode_ci",
		                NULL};
		pid_t p = fork();
		if (p < 0) {
			seterr(m, "fork: %s", strerror(errno));
			break;
		}
		if (p == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
			}
			execv(argv[0], argv);
			_exit(127);
		}
		m->pid = p;
		double deadline = now_ms() + MDB_START_MS;
		while (now_ms() < deadline) {
			int st;
			if (waitpid(p, &st, WNOHANG) == p) {
				m->pid = 0;
				seterr(m, "mariadbd exited during start (port %d)", m->port);
				break;
			}
			MYSQL *c = NULL;
			if (access(m->socket, F_OK) == 0 &&
			    (c = mdbtest_connect(m, NULL)) != NULL) {
				mysql_close(c);
				m->start_ms = now_ms() - t0;
				m->err[0] = '\0';
				return 0;
			}
			sleep_ms(50);
		}
		if (m->pid) {
			seterr(m, "mariadbd did not accept connections within %d s",
			       MDB_START_MS / 1000);
			kill(m->pid, SIGKILL);
			waitpid(m->pid, NULL, 0);
			m->pid = 0;
			break;
		}
	}
	dump_tail(errlog);
	rm_tree(m->dir);
	return -1;
}

int mdbtest_stop(struct mdbtest *m)
{
	int rc = 0;
	if (m->pid > 0) {
		kill(m->pid, SIGTERM);
		double deadline = now_ms() + MDB_STOP_MS;
		int st;
		pid_t w;
		while ((w = waitpid(m->pid, &st, WNOHANG)) == 0 && now_ms() < deadline)
			sleep_ms(20);
		if (w == 0) {
			kill(m->pid, SIGKILL);
			waitpid(m->pid, &st, 0);
			seterr(m, "mariadbd did not stop within %d s", MDB_STOP_MS / 1000);
			rc = -1;
		}
		m->pid = 0;
	}
	if (m->dir[0]) {
		rm_tree(m->dir);
		m->dir[0] = '\0';
	}
	return rc;
}

int dbtest_odbc_setup(const struct pgtest *pg, const char *dir, const char *dsn_name, char *err,
                      size_t errlen)
{
	const char *drv = "/usr/lib/x86_64-linux-gnu/odbc/psqlodbcw.so";
	if (access(drv, R_OK) != 0) {
		snprintf(err, errlen, "%s is missing (Debian: odbc-postgresql)", drv);
		return -1;
	}
	char path[300];
	snprintf(path, sizeof path, "%s/odbcinst.ini", dir);
	FILE *f = fopen(path, "w");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f, "[PostgreSQL Unicode]\nDriver=%s\nThreading=0\n", drv);
	fclose(f);
	snprintf(path, sizeof path, "%s/odbc.ini", dir);
	if (!(f = fopen(path, "w"))) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(f,
	        "[%s]\nDriver=PostgreSQL Unicode\nServername=%s\nPort=%d\nDatabase=%s\n"
	        "Username=%s\nSSLmode=disable\n",
	        dsn_name, pg->dir, pg->port, pg->dbname, pg->user);
	fclose(f);
	if (setenv("ODBCSYSINI", dir, 1) != 0 || setenv("ODBCINI", path, 1) != 0) {
		snprintf(err, errlen, "setenv: %s", strerror(errno));
		return -1;
	}
	return 0;
}
