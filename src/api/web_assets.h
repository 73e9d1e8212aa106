/*
 * web_assets.h - the dashboard's files (web/), compiled into the binary by
 * cmake/embed_web.cmake: each file's bytes, a gzip copy when that is at
 * least 10% smaller, and its SHA-256 (hex) for the strong ETag. Sorted by
 * path. Read-only for the life of the process.
 */
#ifndef HR_WEB_ASSETS_H
#define HR_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
	const char *path; /* relative to web/: "index.html", "js/app.js" */
	const unsigned char *data;
	size_t len;
	const unsigned char *gz; /* NULL: served uncompressed only */
	size_t gzlen;
	const char *sha256; /* 64 hex digits of data */
};

extern const struct web_asset web_assets[];
extern const unsigned web_nassets;

#endif
