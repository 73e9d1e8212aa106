/*
 * evlog.c - a test plugin that logs every on_status call it gets (the
 * outbox tests in tests/integration/test_plugins.c): one line
 * "<message id> <from> <to>\n" appended to the file plugins.config.evlog.log,
 * after sleeping sleep_ms (default 0). Counts "events" (herald_metric_add).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "herald/plugin.h"

static int status(struct herald_ctx *c, const struct herald_msg *m, const struct herald_event *e)
{
	const char *s = herald_config_get(c, "sleep_ms");
	long ms = s ? atol(s) : 0;
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (ms > 0 && nanosleep(&ts, &ts) != 0)
		;
	const char *path = herald_config_get(c, "log");
	if (!path)
		return herald_fail(c, "no log configured");
	char line[256];
	int n = snprintf(line, sizeof line, "%s %s %s\n", herald_msg_id(m), herald_event_from(e),
	                 herald_event_status(e));
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (fd < 0)
		return herald_fail(c, "cannot open %s", path);
	/* One write with O_APPEND: lines of concurrent calls never mix. */
	ssize_t w = write(fd, line, (size_t)n);
	close(fd);
	if (w != n)
		return herald_fail(c, "short write");
	herald_metric_add(c, "events", 1);
	return HERALD_OK;
}

HERALD_PLUGIN(.name = "evlog", .version = "1", .on_status = status);
