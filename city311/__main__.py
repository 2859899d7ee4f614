from city311.cli import main

main()
