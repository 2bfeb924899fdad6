"""Unit tests of status_list.py's list decoding against the draft's own examples (section 4.1)."""

import base64
import unittest
import zlib

from status_list import INVALID, SUSPENDED, VALID, StatusListError, decode_lst, status_at


class DecodingTest(unittest.TestCase):
    def test_the_drafts_one_bit_example(self):
        data = decode_lst("eNrbuRgAAhcBXQ")
        self.assertEqual(data, bytes([0xB9, 0xA3]))
        statuses = [status_at(1, data, i) for i in range(16)]
        self.assertEqual(statuses, [1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1])

    def test_the_drafts_two_bit_example(self):
        data = decode_lst("eNo76fITAAPfAgc")
        self.assertEqual(data, bytes([0xC9, 0x44, 0xF9]))
        statuses = [status_at(2, data, i) for i in range(12)]
        self.assertEqual(statuses, [1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3])
        self.assertEqual((statuses[2], statuses[0], statuses[1]), (VALID, INVALID, SUSPENDED))

    def test_an_index_past_the_end_is_refused(self):
        data = decode_lst("eNo76fITAAPfAgc")
        for idx in (12, -1, 10**9):
            with self.assertRaises(StatusListError):
                status_at(2, data, idx)
        for bits, idx in ((3, 0), (True, 0), (2.0, 0), (2, True), (2, 1.0)):
            with self.assertRaises(StatusListError):
                status_at(bits, data, idx)

    def test_raw_deflate_and_bombs_are_refused(self):
        raw = zlib.compressobj(9, zlib.DEFLATED, -15)
        deflated = raw.compress(b"\x55" * 64) + raw.flush()
        with self.assertRaises(StatusListError):
            decode_lst(base64.urlsafe_b64encode(deflated).decode().rstrip("="))
        bomb = base64.urlsafe_b64encode(zlib.compress(b"\x00" * (1 << 20), 9)).decode().rstrip("=")
        with self.assertRaises(StatusListError):
            decode_lst(bomb, max_bytes=1 << 16)
        self.assertEqual(len(decode_lst(bomb)), 1 << 20)


if __name__ == "__main__":
    unittest.main()
