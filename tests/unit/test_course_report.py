"""The course report's table and CSV, by equality."""

from aifactory.courses.grading.report import Score, csv_text, table


def test_grades_table_counts_a_missing_submission_as_zero_and_shows_it_empty():
    t = table(["bob", "alice"], [("a1", 3.0), ("a2", 7.0)],
              [Score("alice", "a1", 3.0, 3.0), Score("alice", "a2", 5.5, 7.0, seconds_late=60.0),
               Score("bob", "a2", 7.0, 7.0)])
    assert t.rows == [
        {"student": "alice", "a1": 3.0, "a2": 5.5, "total": 8.5, "max": 10.0, "percent": 85.0, "late": 1},
        {"student": "bob", "a1": None, "a2": 7.0, "total": 7.0, "max": 10.0, "percent": 70.0, "late": 0},
    ]
    assert csv_text(t) == (
        "student,a1,a2,total,max,percent,late_submissions\n"
        "alice,3,5.5,8.5,10,85.0,1\n"
        "bob,,7,7,10,70.0,0\n"
        "(max),3,7,10,,,\n"
    )


def test_a_course_without_assignments_has_an_empty_report():
    t = table(["alice"], [], [])
    assert t.rows == [{"student": "alice", "total": 0.0, "max": 0, "percent": 0.0, "late": 0}]
