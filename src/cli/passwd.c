/*
 * passwd.c - `herald hash-password`: reads a password from
 * standard input (one line; without echo on a terminal) and prints its
 * crypt(3) hash, yescrypt with a random salt from libxcrypt, for
 * dashboard.users[].password_hash. The password is wiped from memory.
 */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "herald.h"

#define PASSWORD_MAX 256

int hash_password_main(int argc, char **argv)
{
	if (argc > 1) {
		bool help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");
		fprintf(
		    help ? stdout : stderr,
		    "usage: herald hash-password < password\n"
		    "Reads a password (one line) and prints its yescrypt hash for the config's\n"
		    "dashboard.users[].password_hash.\n");
		return help ? 0 : 2;
	}
	bool tty = isatty(STDIN_FILENO);
	struct termios old, quiet;
	if (tty) {
		fprintf(stderr, "Password: ");
		if (tcgetattr(STDIN_FILENO, &old) == 0) {
			quiet = old;
			quiet.c_lflag &= ~(tcflag_t)ECHO;
			if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
				tty = false;
		} else {
			tty = false;
		}
	}
	char pw[PASSWORD_MAX + 2];
	bool got = fgets(pw, sizeof pw, stdin) != NULL;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
		fputc('\n', stderr);
	}
	size_t n = got ? strcspn(pw, "\r\n") : 0;
	bool too_long = got && pw[n] == '\0' && n > PASSWORD_MAX;
	pw[n] = '\0';
	int rc = 0;
	if (!got || n == 0) {
		fprintf(stderr, "herald hash-password: no password on standard input\n");
		rc = 1;
	} else if (too_long) {
		fprintf(stderr, "herald hash-password: the password is longer than %d bytes\n",
		        PASSWORD_MAX);
		rc = 1;
	}
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd = rc ? NULL : calloc(1, sizeof *cd);
	if (!rc && !cd) {
		fprintf(stderr, "herald hash-password: out of memory\n");
		rc = 1;
	}
	if (!rc && !crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt)) {
		fprintf(stderr, "herald hash-password: no yescrypt salt (libxcrypt)\n");
		rc = 1;
	}
	const char *out = rc ? NULL : crypt_rn(pw, salt, cd, sizeof *cd);
	explicit_bzero(pw, sizeof pw);
	if (!rc && (!out || out[0] == '*')) {
		fprintf(stderr, "herald hash-password: hashing failed\n");
		rc = 1;
	}
	if (!rc)
		printf("%s\n", out);
	if (cd) {
		explicit_bzero(cd, sizeof *cd);
		free(cd);
	}
	return rc;
}
