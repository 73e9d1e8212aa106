/* bare.c - a test plugin with no hook at all: every default applies. */
#include "herald/plugin.h"

HERALD_PLUGIN(.name = "bare", .version = "0.1");
