"""unittest → TAP (for meson's `protocol : 'tap'`), stdlib only.

    if __name__ == "__main__":
        tap.main()

Prints "1..N" where N is the number of test methods plus one last line, "fixtures", that
reports errors in setUpModule/setUpClass/tearDownClass/tearDownModule. Tests that never
ran because a fixture failed are reported "not ok" (or "ok # SKIP" when the fixture
skipped). Diagnostics go to stdout as "# " comment lines. Exit status 1 if anything failed.
"""

import io
import os
import sys
import time
import traceback
import unittest


def _lines(text):
    return "".join("# " + line + "\n" for line in text.rstrip("\n").split("\n"))


class TAPResult(unittest.TestResult):
    def __init__(self, out, all_tests):
        super().__init__()
        self.out = out
        self.all_tests = all_tests
        self.done = set()
        self.n = 0
        self.failed = 0
        self.fixture_errors = []
        self.fixture_skip = None
        self.t0 = None

    def _emit(self, ok, test_id, directive="", diag=""):
        self.n += 1
        name = test_id.replace("#", "_")
        line = "%s %d - %s" % ("ok" if ok else "not ok", self.n, name)
        if directive:
            line += " # " + directive
        self.out.write(line + "\n")
        if diag:
            self.out.write(_lines(diag))
        self.out.flush()
        if not ok:
            self.failed += 1

    @staticmethod
    def _is_fixture(test):
        return not isinstance(test, unittest.TestCase) or type(test).__name__ == "_ErrorHolder"

    @staticmethod
    def _name(test):
        return "%s.%s" % (type(test).__name__, test._testMethodName)

    def startTest(self, test):
        super().startTest(test)
        self.t0 = time.monotonic()
        self.out.write("# start %s\n" % self._name(test))
        self.out.flush()

    def _elapsed(self):
        return "" if self.t0 is None else "(%.2fs)\n" % (time.monotonic() - self.t0)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.done.add(test.id())
        self._emit(True, self._name(test), diag=self._elapsed())

    def addFailure(self, test, err):
        super().addFailure(test, err)
        if self._is_fixture(test):
            self.fixture_errors.append((str(test), self._exc_info_to_string(err, test)))
            return
        self.done.add(test.id())
        self._emit(False, self._name(test), diag=self._elapsed() + self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        if self._is_fixture(test):
            self.fixture_errors.append((str(test), self._exc_info_to_string(err, test)))
            self.out.write(_lines("fixture error in %s:\n%s" % (test, self._exc_info_to_string(err, test))))
            self.out.flush()
            return
        self.done.add(test.id())
        self._emit(False, self._name(test), diag=self._elapsed() + self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if self._is_fixture(test):
            self.fixture_skip = reason
            return
        self.done.add(test.id())
        self._emit(True, self._name(test), directive="SKIP " + reason.replace("\n", " "))

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self.done.add(test.id())
        self._emit(True, self._name(test), directive="TODO expected failure")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.done.add(test.id())
        self._emit(False, self._name(test), diag="unexpected success\n")

    def addSubTest(self, test, subtest, err):
        # a failing subTest fails its test; the test line is emitted by stopTest
        if err is not None:
            if not hasattr(test, "_tap_sub_errors"):
                test._tap_sub_errors = []
            test._tap_sub_errors.append("%s:\n%s" % (subtest._subDescription(),
                                                     self._exc_info_to_string(err, test)))
        super().addSubTest(test, subtest, err)

    def stopTest(self, test):
        errs = getattr(test, "_tap_sub_errors", None)
        if errs and test.id() not in self.done:
            self.done.add(test.id())
            self._emit(False, self._name(test), diag=self._elapsed() + "\n".join(errs))
        super().stopTest(test)

    def finish(self):
        for t in self.all_tests:
            if t.id() in self.done:
                continue
            if self.fixture_skip is not None and not self.fixture_errors:
                self._emit(True, self._name(t), directive="SKIP " + self.fixture_skip)
            else:
                self._emit(False, self._name(t), diag="not run: a fixture failed (see below)\n")
        diag = "".join("%s:\n%s" % e for e in self.fixture_errors)
        self._emit(not self.fixture_errors, "fixtures", diag=diag)


def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t


def main(module="__main__"):
    loader = unittest.TestLoader()
    suite = loader.loadTestsFromModule(sys.modules[module])
    if len(sys.argv) > 1:  # run only tests whose id contains one of the arguments
        keep = [t for t in _flatten(suite) if any(a in t.id() for a in sys.argv[1:])]
        suite = unittest.TestSuite(keep)
    all_tests = list(_flatten(suite))
    out = sys.stdout
    out.write("1..%d\n" % (len(all_tests) + 1))
    out.flush()
    result = TAPResult(out, all_tests)
    t0 = time.monotonic()
    try:
        suite.run(result)
    except KeyboardInterrupt:
        out.write("# interrupted\n")
    result.finish()
    out.write("# %d failed of %d, %.1fs\n" % (result.failed, result.n, time.monotonic() - t0))
    out.flush()
    sys.exit(1 if result.failed else 0)
