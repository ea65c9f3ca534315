from sarreg.cli import main

main()
