"""Time identities (slot of day, day of week) of windows: the clock contract of STID and the time-aware ST-VFM."""

import numpy as np

from stvfm.data.timefeatures import series_time_ids, steps_per_day, window_time_ids


def test_series_ids_slot_and_weekday():
    ids = series_time_ids("2016-08-10T00:00:00", 30, 50)  # a Wednesday
    assert ids.shape == (50, 2) and ids.dtype == np.int64
    assert ids[0].tolist() == [0, 2] and ids[47].tolist() == [47, 2] and ids[48].tolist() == [0, 3]
    assert steps_per_day(30) == 48 and steps_per_day(60) == 24


def test_window_ids_from_last_time_match_series():
    start, freq, h, f = "2014-08-04T23:00:00", 60, 6, 6
    full = series_time_ids(start, freq, 100)
    last = np.datetime64(start, "s") + np.timedelta64(40 * 60, "m")  # step 40 is the last input step
    unix = last.astype("datetime64[s]").astype(np.int64)
    for lt in (unix, np.array([unix, unix]), last, str(last)):
        w = window_time_ids(lt, freq, h, f)
        assert w.shape[1:] == (h + f, 2)
        np.testing.assert_array_equal(w[0], full[35:47])
