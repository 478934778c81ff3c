"""Running a student's notebook: the plan (what runs, where answers are captured), the executors
(kernel, warm), the code that runs inside the student's process, and the sandbox around it."""
