# The README's two commands:
#   make demo   - install what is missing, build, start `herald sim` + `herald serve`
#   make test   - install what is missing (PostgreSQL's server too), build with
#                 ASan/UBSan, run the whole suite
#   make fuzz   - install clang if missing, build the libFuzzer targets (fuzz/) and
#                 run each on its corpus and regression inputs plus a few seconds
#                 of new fuzzing (scripts/fuzz.sh; the suite runs it as its test fuzz/ci)
JOBS ?= 2
# Tests at once: three on two cores, because the integration tests spend a
# quarter of their time waiting on the simulator's delays and on polls
# (measured: 28% idle at -j2).
TEST_JOBS ?= 3

.PHONY: demo test build release bench fuzz clean

release:
	scripts/deps.sh build
	cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
	$(MAKE) -C build-release -j$(JOBS) herald

demo: release
	scripts/demo.sh

build:
	scripts/deps.sh build
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Debug -DHERALD_SANITIZE=ON >/dev/null
	$(MAKE) -C build -j$(JOBS)

test: build
	scripts/deps.sh test
	scripts/deps.sh fuzz
	cd build && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(TEST_JOBS)

fuzz:
	scripts/deps.sh fuzz
	FUZZ_JOBS=$(JOBS) scripts/fuzz.sh

bench: release
	scripts/deps.sh bench
	$(MAKE) -C build-release -j$(JOBS) sqlite_baseline pg_baseline make_xlsx
	bench/run.sh

clean:
	rm -rf build build-release build-fuzz
