# One file gzipped (run in its directory so the archive holds no path):
#   cmake -DGZ_IN=<name> -DGZ_OUT=<path.gz> -P gzip_one.cmake
file(ARCHIVE_CREATE OUTPUT ${GZ_OUT} PATHS ${GZ_IN} FORMAT raw COMPRESSION GZip
     COMPRESSION_LEVEL 9)
