/* abi.c - a test plugin built for an ABI this Herald does not speak. */
#include "herald/plugin.h"

__attribute__((visibility("default"))) const struct herald_plugin herald_plugin = {
    .abi = 99, .size = sizeof(struct herald_plugin), .name = "future", .version = "9"};
